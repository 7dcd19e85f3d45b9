"""Two-dimensional convolution written from scratch, fast enough to train with.

A convolution slides a kernel of size (kh, kw) over the padded input and, at every
window, takes a dot product across the window and the input channels. Written that
way it is six nested loops (`conv2d_loop`, for reading). The fast versions below never
loop over pixels in Python; at most they loop over the kh * kw kernel offsets ("taps"):

    output = sum over taps (i, j) of  shift_ij(input) @ W_ij

where shift_ij(input) is the input seen through the strided window that tap (i, j)
visits, laid out channels-last as a (pixels, channels) matrix, and W_ij is the
kernel's (in channels, out channels) slice at that tap. Matrix-multiply libraries run
best with a long inner dimension, so the default path copies every window once into
a (pixels, kh * kw * channels) matrix ("im2col") and multiplies it by the kernel in one
product; when that copy would be too big, one product per tap is summed instead
("implicit GEMM"). Two special cases get their own path:

- patch embedding (kernel == stride, as in the Vision Transformer, Dosovitskiy et al.
  2021, arXiv 2010.11929): the windows do not overlap, so the input is just reshaped
  into patches, no copy of overlapping windows; a 1x1 convolution is the same thing;
- depthwise convolution (groups == in channels, MobileNetV2 and EfficientNetV2, Tan &
  Le 2021, arXiv 2104.00298): each channel has its own kernel, so each tap is an
  element-wise multiply-add, never a dense matrix product.

The backward pass is written by hand, which is both the fast way and the lesson:
the gradient with respect to the weight at tap (i, j) is shift_ij(input)^T @ grad;
the gradient with respect to the input scatters grad @ W_ij^T back through the same
windows. That scatter is itself a convolution: of the output gradient, spread out by
the stride (stride - 1 zeros between its pixels) and padded by d(k - 1) - p, with the
kernel flipped in both axes and its in and out channels swapped (see the tests).
Arithmetic follows Dumoulin & Visin, arXiv 1603.07285.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F

from labcode import validate
from labcode.functional.sizes import as_pair, conv_padding
from labcode.validate import IntPair

LOW_PRECISION = (torch.float16, torch.bfloat16)


def conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    check: bool = True,
) -> torch.Tensor:
    """2-D convolution (cross-correlation, as in every deep-learning library).

    Args:
        input: (N, C_in, H, W).
        weight: (C_out, C_in / groups, kh, kw).
        bias: (C_out,) or None.
        stride: step between windows, an int or (sh, sw).
        padding: zeros added on each side, an int or (ph, pw), or "valid", "same"
            (output size = input size, stride 1 only; an odd total puts the extra
            pixel at the end, as torch does) or "full" (d(k - 1) on each side).
        dilation: spacing between kernel taps, an int or (dh, dw).
        groups: split the channels into this many independent convolutions.
        check: check the arguments first; a layer that has checked its input passes False.

    Returns:
        (N, C_out, H_out, W_out), with H_out = floor((H + pads - d(kh - 1) - 1) / s) + 1.
        Float16 and bfloat16 are computed in float32 and returned in their own dtype.
    """
    fn = "conv2d"
    if check:
        stride, dilation = validate.conv2d_arguments(fn, input, weight, bias, stride, dilation, groups)
    else:
        stride, dilation = as_pair(stride), as_pair(dilation)
    channels, kernel = input.shape[1], (weight.shape[2], weight.shape[3])
    pads = conv_padding(fn, padding, kernel, dilation, stride)  # (top, bottom, left, right)
    if check:
        validate.kernel_fits(fn, input, kernel, dilation, pads)

    device_type = input.device.type
    dtype = autocast_dtype(device_type)
    if dtype is None:  # outside autocast torch promotes nothing: neither do we
        validate.same_dtype(fn, input=input, weight=weight, bias=bias)
        dtype = input.dtype
    compute = torch.float32 if dtype in LOW_PRECISION else dtype
    layout = _memory_format(input)
    with no_autocast(device_type):
        # Round to autocast's dtype first, so we multiply the very numbers torch's kernel
        # would; then add up in float32 (both casts are no-ops outside autocast).
        x, w = input.to(dtype).to(compute), weight.to(dtype).to(compute)
        b = None if bias is None else bias.to(dtype).to(compute)
        if stride == kernel and dilation == (1, 1) and groups == 1:
            out = _patch_conv(_KeepLayout.apply(x, layout), w, b, pads)
        elif groups == channels and channels > 1:
            out = _DepthwiseConv.apply(x, w, b, stride, pads, dilation)
        else:
            out = _DenseConv.apply(x, w, b, stride, pads, dilation, groups)
        out = out.contiguous(memory_format=layout)
    return out.to(dtype)


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast would use on `device_type`, or None when it is off."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
        return torch.get_autocast_dtype(device_type) if enabled else None
    except (TypeError, AttributeError):  # torch < 2.4
        if device_type == "cuda" and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
        if device_type == "cpu" and torch.is_autocast_cpu_enabled():
            return torch.get_autocast_cpu_dtype()
        return None


@contextlib.contextmanager
def no_autocast(device_type: str) -> Iterator[None]:
    """Run the body in the dtypes we chose ourselves."""
    with torch.autocast(device_type, enabled=False):
        yield


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """Keep the caller's layout: channels-last in, channels-last out, as torch does."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _in_layout(grad: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    """A gradient laid out like its input (a fresh copy unless it already is).

    Gradients read back through a slice or a permutation have unusual strides, and some
    of torch's kernels miscompute on those: the CPU batch-norm backward at batch size 1
    gave an input gradient off by more than its own size.
    """
    return grad.contiguous(memory_format=layout)


class _KeepLayout(torch.autograd.Function):
    """Identity forward; the backward hands the gradient back in the input's layout."""

    @staticmethod
    def forward(ctx, x, layout):
        ctx.layout = layout
        return x.view_as(x)  # only ever read, never modified in place

    @staticmethod
    def backward(ctx, grad):
        return _in_layout(grad, ctx.layout), None


def _conv_reference(x, weight, stride, pads, dilation, groups):
    """The same convolution from differentiable tensor operations only: unfold the windows
    and take one product. Slower, but autograd can differentiate its gradient again (a
    gradient penalty needs that), so the hand-written backward passes use it then."""
    n, c, _, _ = x.shape
    o, cg, kh, kw = weight.shape
    x = F.pad(x, (pads[2], pads[3], pads[0], pads[1]))
    reach = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    windows = x.unfold(2, reach[0], stride[0]).unfold(3, reach[1], stride[1])  # (N, C, Ho, Wo, rh, rw)
    windows = windows[..., :: dilation[0], :: dilation[1]]  # (N, C, Ho, Wo, kh, kw)
    ho, wo = windows.shape[2], windows.shape[3]
    windows = windows.reshape(n, groups, cg, ho, wo, kh, kw)
    wg = weight.reshape(groups, o // groups, cg, kh, kw)
    out = torch.einsum("ngchwij,gocij->ngohw", windows, wg)  # (N, G, Og, Ho, Wo)
    return out.reshape(n, o, ho, wo)


def _differentiable_grads(ctx, grad_out, x, weight, stride, pads, dilation, groups):
    """(grad_x, grad_w, grad_b) as differentiable functions of x, weight and grad_out.

    Used when the backward pass itself is recorded (create_graph=True): autograd
    differentiates `_conv_reference`, whose every step it can differentiate once more.
    """
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    wanted = [t for t, need in ((x, need_x), (weight, need_w)) if need]
    grads = []
    if wanted:
        with torch.enable_grad():
            out = _conv_reference(x, weight, stride, pads, dilation, groups)
            grads = list(torch.autograd.grad(out, wanted, grad_out, create_graph=True))
    grad_x = _in_layout(grads.pop(0), ctx.layout) if need_x else None
    grad_w = grads.pop(0) if need_w else None
    grad_b = grad_out.sum((0, 2, 3)) if need_b else None
    return grad_x, grad_w, grad_b


def _out_size(size: int, kernel: int, stride: int, dilation: int) -> int:
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def _tap(x: torch.Tensor, i: int, j: int, out_hw, stride, dilation) -> torch.Tensor:
    """The strided window that kernel tap (i, j) sees, along dims -3, -2 of (..., H, W, C)."""
    (ho, wo), (sh, sw), (dh, dw) = out_hw, stride, dilation
    return x[..., i * dh: i * dh + sh * (ho - 1) + 1: sh, j * dw: j * dw + sw * (wo - 1) + 1: sw, :]


def _patch_conv(x, weight, bias, pads):
    """Kernel == stride, no dilation, one group: non-overlapping patches, one product."""
    if any(pads):
        x = F.pad(x, (pads[2], pads[3], pads[0], pads[1]))
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = h // kh, w // kw
    x = x[:, :, : ho * kh, : wo * kw]  # torch drops the pixels no window reaches
    patches = x.reshape(n, c, ho, kh, wo, kw).permute(0, 2, 4, 1, 3, 5)  # (N, Ho, Wo, C, kh, kw)
    patches = patches.reshape(n * ho * wo, c * kh * kw)  # (N*Ho*Wo, C*kh*kw)
    w2d = weight.reshape(o, c * kh * kw).t()  # (C*kh*kw, O)
    out = patches @ w2d if bias is None else torch.addmm(bias, patches, w2d)  # (N*Ho*Wo, O)
    return out.view(n, ho, wo, o).permute(0, 3, 1, 2)  # (N, O, Ho, Wo), channels-last


class _DenseConv(torch.autograd.Function):
    """Grouped convolution as matrix products over channels-last windows.

    The windows are copied ("im2col") into a reusable buffer, a chunk of images at a
    time, multiplied, and forgotten; the backward pass copies them again. On a CPU a
    fresh buffer of tens of megabytes costs more in page faults than the copy itself,
    and keeping every window for the backward pass would cost kh * kw times the input's
    memory, so recopying is both faster and lighter.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, pads, dilation, groups):
        n, c, h, w = x.shape
        o, cg, kh, kw = weight.shape
        g, og = groups, o // groups
        top, bottom, left, right = pads
        hp, wp = h + top + bottom, w + left + right
        out_hw = (_out_size(hp, kh, stride[0], dilation[0]), _out_size(wp, kw, stride[1], dilation[1]))
        m = n * out_hw[0] * out_hw[1]  # output pixels
        # Padded input, group-major and channels-last: (G, N, Hp, Wp, Cg)
        xg = x.new_zeros((g, n, hp, wp, cg)) if any(pads) else x.new_empty((g, n, hp, wp, cg))
        xg[:, :, top: top + h, left: left + w] = x.view(n, g, cg, h, w).permute(1, 0, 3, 4, 2)
        wg = weight.view(g, og, cg, kh, kw).permute(0, 3, 4, 2, 1)  # (G, kh, kw, Cg, Og)
        wg = wg.reshape(g, kh * kw * cg, og)  # tap-major rows, matching im2col's columns
        # The output, channels-last: (N, Ho, Wo, G, Og) in memory, written through a
        # (G, N*Ho*Wo, Og) view. A fresh tensor (never the bias's memory), and returned
        # itself rather than a view of it: a caller may modify it in place (relu_).
        result = torch.empty((n, o) + out_hw, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
        out = result.permute(0, 2, 3, 1).view(m, g, og).transpose(0, 1)  # (G, N*Ho*Wo, Og)
        if bias is None:
            out.zero_()
        else:
            out.copy_(bias.view(g, 1, og).expand(g, m, og))
        for rows, cols in _im2col_chunks(xg, (kh, kw), out_hw, stride, dilation):
            # One product with kh*kw*Cg terms per output: BLAS is at its best with a long
            # inner dimension, far better than with kh*kw thin products of Cg terms.
            for k in range(g):  # cols[k]: (chunk pixels, kh*kw*Cg)
                out[k, rows].addmm_(cols[k], wg[k])
        ctx.save_for_backward(xg, wg, x, weight)  # x, weight: for a second derivative
        ctx.conf = (x.shape, (kh, kw), stride, pads, dilation, out_hw, bias is not None)
        ctx.layout, ctx.weight_layout = _memory_format(x), _memory_format(weight)
        return result  # (N, O, Ho, Wo), channels-last

    @staticmethod
    def backward(ctx, grad_out):
        xg, wg, x, weight = ctx.saved_tensors
        (n, c, h, w), (kh, kw), stride, pads, dilation, out_hw, has_bias = ctx.conf
        if torch.is_grad_enabled():  # create_graph=True: the gradient must be differentiable
            grads = _differentiable_grads(ctx, grad_out, x, weight, stride, pads, dilation, wg.shape[0])
            return grads + (None, None, None, None)
        g, _, og = wg.shape
        cg = c // g
        m = n * out_hw[0] * out_hw[1]
        # (N, O, Ho, Wo) -> (G, N*Ho*Wo, Og), the layout of the forward's output
        grad = grad_out.reshape(n, g, og, out_hw[0], out_hw[1]).permute(1, 0, 3, 4, 2).reshape(g, m, og)
        grad_x = grad_w = grad_b = None
        if has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(1).reshape(g * og)
        if ctx.needs_input_grad[1]:
            # dL/dW at tap (i, j) = window_ij^T @ grad: all taps at once, chunk by chunk
            gw = wg.new_zeros((g, og, kh * kw * cg))  # (G, Og, kh*kw*Cg)
            for rows, cols in _im2col_chunks(xg, (kh, kw), out_hw, stride, dilation):
                for k in range(g):  # grad^T @ windows: the faster orientation for BLAS here
                    gw[k].addmm_(grad[k, rows].t(), cols[k])
            grad_w = gw.view(g, og, kh, kw, cg).permute(0, 1, 4, 2, 3).reshape(g * og, cg, kh, kw)
            grad_w = _in_layout(grad_w, ctx.weight_layout)
        if ctx.needs_input_grad[0]:
            # dL/dx: every window sends grad @ W_ij^T back to the pixels it read.
            gxg = torch.zeros_like(xg)  # (G, N, Hp, Wp, Cg)
            per_image = out_hw[0] * out_hw[1]
            for first, count in _image_chunks(n, per_image * kh * kw * cg * g, xg.element_size()):
                rows = slice(first * per_image, (first + count) * per_image)
                grad_cols = _workspace((g, count * per_image, kh * kw * cg), xg)
                for k in range(g):
                    torch.mm(grad[k, rows], wg[k].t(), out=grad_cols[k])  # (pixels, kh*kw*Cg)
                grad_cols = grad_cols.view(g, count, out_hw[0], out_hw[1], kh, kw, cg)
                target = gxg[:, first: first + count]
                for i in range(kh):
                    for j in range(kw):
                        _tap(target, i, j, out_hw, stride, dilation).add_(grad_cols[:, :, :, :, i, j])
            grad_x = _in_layout(_ungroup(gxg, pads, (h, w)), ctx.layout)
        return grad_x, grad_w, grad_b, None, None, None, None


# Bytes of windows copied out at a time. Big chunks give BLAS long products (the weight
# gradient sums over every pixel of the chunk); the cap bounds the reusable buffer.
CHUNK_BYTES = 64 << 20
_WORKSPACES: dict[tuple, torch.Tensor] = {}


def _workspace(shape: tuple, like: torch.Tensor) -> torch.Tensor:
    """A scratch tensor of `shape`; on a CPU, one buffer reused from call to call.

    GPUs have a caching allocator; on a CPU every large new buffer is fresh memory from
    the operating system, and touching it page by page costs more than the work. The
    buffer is shared, so two threads must not run these convolutions at the same time.
    """
    numel = 1
    for size in shape:
        numel *= size
    if like.device.type != "cpu":
        return like.new_empty(shape)
    key = (like.dtype, like.device)
    buffer = _WORKSPACES.get(key)
    if buffer is None or buffer.numel() < numel:
        buffer = like.new_empty(numel)
        _WORKSPACES[key] = buffer
    return buffer[:numel].view(shape)


def _image_chunks(n: int, numel_per_image: int, element_size: int):
    """(first image, number of images) runs whose windows fit in CHUNK_BYTES."""
    step = max(1, CHUNK_BYTES // max(1, numel_per_image * element_size))
    for first in range(0, n, step):
        yield first, min(step, n - first)


def _im2col_chunks(xg, kernel, out_hw, stride, dilation):
    """Yield (output rows, windows) for a few images at a time.

    The windows of those images are copied into one (G, rows, kh*kw*Cg) matrix, a view
    of the reusable workspace, valid until the next iteration.
    """
    g, n, _, _, cg = xg.shape
    per_image = out_hw[0] * out_hw[1]
    width = kernel[0] * kernel[1] * cg
    for first, count in _image_chunks(n, per_image * width * g, xg.element_size()):
        cols = _workspace((g, count, out_hw[0], out_hw[1], kernel[0], kernel[1], cg), xg)
        cols.copy_(_windows(xg[:, first: first + count], kernel, out_hw, stride, dilation))
        rows = slice(first * per_image, (first + count) * per_image)
        yield rows, cols.view(g, count * per_image, width)


def _windows(xg, kernel, out_hw, stride, dilation):
    """Every window of (G, N, Hp, Wp, Cg) as a (G, N, Ho, Wo, kh, kw, Cg) view (no copy)."""
    g, n, _, _, cg = xg.shape
    s_g, s_n, s_h, s_w, s_c = xg.stride()
    return xg.as_strided(
        (g, n, out_hw[0], out_hw[1], kernel[0], kernel[1], cg),
        (s_g, s_n, s_h * stride[0], s_w * stride[1], s_h * dilation[0], s_w * dilation[1], s_c),
        xg.storage_offset(),
    )


def _ungroup(gxg, pads, hw):
    """(G, N, Hp, Wp, Cg) padded gradient -> (N, C, H, W) gradient of the unpadded input."""
    g, n, _, _, cg = gxg.shape
    top, _, left, _ = pads
    inner = gxg[:, :, top: top + hw[0], left: left + hw[1]]  # (G, N, H, W, Cg)
    return inner.permute(1, 0, 4, 2, 3).reshape(n, g * cg, hw[0], hw[1])


# Images per step of the depthwise convolution, in bytes of output: small enough that a
# step's output and input stay in the CPU's cache (L2 is 0.5-2 MB per core) while all
# kh * kw taps are added into it. One pass over memory instead of kh * kw passes: on two
# cores this alone made the 3x3 depthwise forward pass about 2x faster.
DEPTHWISE_CHUNK_BYTES = 1 << 20


class _DepthwiseConv(torch.autograd.Function):
    """One kernel per channel: kh * kw element-wise multiply-adds of shifted inputs.

    Three things make it fast without leaving tensor operations:
    - no padded copy of the input: tap (i, j) only touches the outputs whose input pixel
      lies inside the image (`_tap_ranges`), which is what zero padding means;
    - with a stride s, only the strided output positions are computed, from the input's
      s * s "phases" (the pixels at rows a, a + s, ... and columns b, b + s, ...): tap
      (i, j) reads one phase with stride 1. On a channels-first input a phase steps over
      every s-th number, so the phases are first copied into dense tensors, and the nine
      multiply-adds run on adjacent numbers (vectorised); the input gradient is gathered
      in dense phases too and written back once. On two cores this made the 3x3/2
      layer about 1.5x faster. Channels-last phases already read adjacent channels;
    - the batch is processed a few images at a time (DEPTHWISE_CHUNK_BYTES), so that the
      kh * kw updates of a chunk hit the cache rather than main memory.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, pads, dilation):
        n, c, h, w = x.shape
        o, _, kh, kw = weight.shape
        layout = _memory_format(x)
        # Output channel k reads input channel k // multiplier (multiplier 1 in every
        # model of the book: then this is x itself, no copy).
        xr = x if o == c else x.repeat_interleave(o // c, dim=1)  # (N, O, H, W)
        out_hw = (_out_size(h + pads[0] + pads[1], kh, stride[0], dilation[0]),
                  _out_size(w + pads[2] + pads[3], kw, stride[1], dilation[1]))
        out = torch.empty((n, o) + out_hw, dtype=x.dtype, device=x.device, memory_format=layout)
        # per tap (1, O, 1, 1), contiguous: read along the channels of a channels-last
        # input, a strided weight would cost a gather at every element
        taps = weight.reshape(o, kh * kw).t().contiguous().view(kh, kw, 1, o, 1, 1)
        ranges = _tap_ranges((h, w), (kh, kw), out_hw, stride, pads, dilation)
        phases = _phases(_pad_to_stride(xr, stride), stride)  # (N, sh, sw, O, H', W')
        dense = layout == torch.contiguous_format and stride != (1, 1)
        if dense:  # channels-first phases step over numbers: one copy makes them adjacent
            phases = phases.contiguous()
        for images in _depthwise_chunks(out):
            chunk, source = out[images], phases[images]
            if bias is None:
                chunk.zero_()
            else:
                chunk.copy_(bias.view(1, o, 1, 1).expand_as(chunk))
            for (i, j), (phase, out_view, in_view) in ranges.items():
                chunk[out_view].addcmul_(source[(slice(None),) + phase][in_view], taps[i, j])
        ctx.save_for_backward(phases, taps, x, weight)  # x, weight: for a second derivative
        ctx.conf = (x.shape, weight.shape, stride, pads, dilation, out_hw, bias is not None)
        ctx.layout, ctx.dense = layout, dense
        return out

    @staticmethod
    def backward(ctx, grad_out):
        phases, taps, x, weight = ctx.saved_tensors
        x_shape, w_shape, stride, pads, dilation, out_hw, has_bias = ctx.conf
        n, c, h, w = x_shape
        o, _, kh, kw = w_shape
        if torch.is_grad_enabled():  # create_graph=True: the gradient must be differentiable
            grads = _differentiable_grads(ctx, grad_out, x, weight, stride, pads, dilation, c)
            return grads + (None, None, None)
        grad_x = grad_w = grad_b = None
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_out = grad_out.contiguous(memory_format=ctx.layout)
        ranges = _tap_ranges((h, w), (kh, kw), out_hw, stride, pads, dilation)
        if has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum((0, 2, 3))
        gw = taps.new_zeros((kh, kw, o)) if need_w else None
        if need_x:  # dL/dx, gathered phase by phase, in dense sums where the phases are dense
            hp, wp = phases.shape[4] * stride[0], phases.shape[5] * stride[1]
            gx = torch.empty((n, o, hp, wp), dtype=x.dtype, device=x.device, memory_format=ctx.layout)
            sums = torch.zeros_like(phases) if ctx.dense else _phases(gx.zero_(), stride)
        for images in _depthwise_chunks(grad_out):
            g, source = grad_out[images], phases[images]
            if need_w:  # dL/dW[o, i, j] = sum of grad * the input tap (i, j) saw
                for (i, j), (phase, out_view, in_view) in ranges.items():
                    # a fresh product, laid out densely, sums far faster than one written
                    # into a strided view of a buffer (measured: 2-6x on this reduction)
                    gw[i, j] += (g[out_view] * source[(slice(None),) + phase][in_view]).sum((0, 2, 3))
            if need_x:  # each output sends grad * W[i, j] back to the pixel it read
                target = sums[images]
                for (i, j), (phase, out_view, in_view) in ranges.items():
                    target[(slice(None),) + phase][in_view].addcmul_(g[out_view], taps[i, j])
        if need_w:
            grad_w = gw.view(kh * kw, o).t().reshape(w_shape)
        if need_x:
            if ctx.dense:  # one strided write per phase (5x faster than one 6-d copy here),
                # every pixel's phase written whole, so gx needed no zeros beforehand
                gx_phases = _phases(gx, stride)
                for a in range(stride[0]):
                    for b in range(stride[1]):
                        gx_phases[:, a, b] = sums[:, a, b]
            gx = gx[:, :, :h, :w]
            grad_x = gx if o == c else gx.reshape(n, c, o // c, h, w).sum(2)
            grad_x = _in_layout(grad_x, ctx.layout)
        return grad_x, grad_w, grad_b, None, None, None


def _depthwise_chunks(out: torch.Tensor) -> Iterator[slice]:
    """Runs of images whose output fits in DEPTHWISE_CHUNK_BYTES (at least one image)."""
    n = out.shape[0]
    per_image = max(1, out[:1].numel() * out.element_size())
    step = max(1, DEPTHWISE_CHUNK_BYTES // per_image)
    for first in range(0, n, step):
        yield slice(first, min(n, first + step))


def _tap_ranges(size, kernel, out_hw, stride, pads, dilation) -> dict:
    """For each tap (i, j): (phase, output view, view into that phase), views index (N, C, H, W).

    Output (r, s) reads input (r * sh + i * dh - top, s * sw + j * dw - left). Along an
    axis with stride st, input row st * q + a is row q of phase a (the rows a, a + st, ...),
    so the tap reads phase (a, b) at stride 1; with stride 1 the only phase is the input.
    Outputs whose input pixel falls in the padding are left out, since zeros add nothing.
    """
    ranges = {}
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            phase, views = [], []
            for axis, tap in enumerate((i, j)):
                shift = tap * dilation[axis] - pads[2 * axis]  # output r reads r * st + shift
                a = shift % stride[axis]
                rows = len(range(a, size[axis], stride[axis]))  # the phase's length
                phase.append(a)
                views.append(_axis_range(rows, out_hw[axis], (shift - a) // stride[axis]))
            if any(v is None for v in views):
                continue  # this tap sees only padding
            (out_r, in_r), (out_c, in_c) = views
            ranges[i, j] = (tuple(phase), (slice(None), slice(None), out_r, out_c),
                            (slice(None), slice(None), in_r, in_c))
    return ranges


def _phases(x: torch.Tensor, stride) -> torch.Tensor:
    """(N, C, H, W) seen as (N, sh, sw, C, H', W'): phase (a, b) is x[:, :, a::sh, b::sw].

    A view, no copy; H and W must be multiples of the stride (`_pad_to_stride`)."""
    (n, c, h, w), (sh, sw) = x.shape, stride
    s_n, s_c, s_h, s_w = x.stride()
    return x.as_strided((n, sh, sw, c, h // sh, w // sw), (s_n, s_h, s_w, s_c, s_h * sh, s_w * sw),
                        x.storage_offset())


def _pad_to_stride(x: torch.Tensor, stride) -> torch.Tensor:
    """x with zero rows and columns added at the end up to multiples of the stride (the
    taps never read them)."""
    h, w = x.shape[2:]
    extra_h, extra_w = -h % stride[0], -w % stride[1]
    return F.pad(x, (0, extra_w, 0, extra_h)) if extra_h or extra_w else x


def _axis_range(size, out_size, shift):
    """(output slice, input slice) along one axis where output r reads input r + shift,
    both inside their bounds, or None if no output does."""
    first, last = max(0, -shift), min(out_size - 1, size - 1 - shift)
    if last < first:
        return None
    return slice(first, last + 1), slice(first + shift, last + shift + 1)


def conv2d_loop(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
) -> torch.Tensor:
    """The convolution as the definition reads: a loop over every output value.

    For teaching: slow (four Python loops), one group, no dilation. Models use `conv2d`.

    Args:
        input: (N, C, H, W).
        weight: (C_out, C, kh, kw).
        bias: (C_out,) or None.
        stride: an int or (sh, sw).
        padding: an int, (ph, pw), "valid", "same" or "full".
    """
    fn = "conv2d_loop"
    validate.tensor(fn, "input", input)
    validate.tensor(fn, "weight", weight)
    validate.tensor(fn, "bias", bias, optional=True)
    validate.rank(fn, "input", input, 4, "(N, C, H, W)")
    validate.rank(fn, "weight", weight, 4, "(C_out, C_in, kh, kw)")
    validate.conv_channels(fn, input, weight, groups=1)
    sh, sw = validate.pair(fn, "stride", stride, minimum=1)
    out_channels, _, kh, kw = weight.shape
    top, bottom, left, right = conv_padding(fn, padding, (kh, kw), (1, 1), (sh, sw))
    x = F.pad(input, (left, right, top, bottom))  # zeros around the image
    n, _, hp, wp = x.shape
    validate.window_fits(fn, "the kernel", (kh, kw), (hp, wp))
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    out = input.new_zeros((n, out_channels, ho, wo))
    for b in range(n):
        for k in range(out_channels):
            for r in range(ho):
                for s in range(wo):
                    window = x[b, :, r * sh: r * sh + kh, s * sw: s * sw + kw]  # (C, kh, kw)
                    out[b, k, r, s] = (window * weight[k]).sum()
            if bias is not None:
                out[b, k] += bias[k]
    return out
