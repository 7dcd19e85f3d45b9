"""Max and average pooling written from scratch.

A pooling window of size (kh, kw) slides over each channel with a stride and keeps
the largest value (max pooling) or the mean (average pooling). AlexNet's overlapping
max pool (Krizhevsky et al. 2012: window 3, stride 2) is the classic case.

Both are separable, which makes them cheap without looping over pixels: pool each
row over kw columns first, then pool those results over kh rows. The backward pass
is written by hand. For the average it spreads each output gradient evenly over its
window. For the maximum only the winning input gets the gradient; ties go to the
first maximum in row-major order (first by row, then by column), as torch does, and
that choice is separable too: the first row that holds the maximum, then the first
column of that row.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from labcode import validate
from labcode.functional.conv import _in_layout, _memory_format
from labcode.functional.sizes import as_pair
from labcode.validate import IntPair


def max_pool2d(
    input: torch.Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
    dilation: IntPair = 1, ceil_mode: bool = False, return_indices: bool = False,
    *, check: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """2-D max pooling; padding counts as minus infinity.

    Args:
        input: (N, C, H, W).
        kernel_size: window size, an int or (kh, kw).
        stride: step between windows; defaults to kernel_size.
        padding: pixels added on each side, at most half the window (as in torch).
        dilation: spacing between the window's taps, an int or (dh, dw).
        ceil_mode: round the output size up, so a last partial window counts too (as
            long as it starts inside the input or its left padding, as in torch).
        return_indices: also return where each maximum came from, as a flat index into
            its channel's H * W (what `F.max_unpool2d` takes). A window with no input pixel
            in it (dilation 2 steps over a 1-pixel input: taps -1 and 1) gives -inf, as in
            torch, and passes no gradient back; torch's index there points past the input
            or into another window, labcode's is torch's row and column clamped into the
            input, so always a valid index.
        check: check the arguments first; a layer that has checked its input passes False.

    Returns:
        (N, C, H_out, W_out), H_out = floor((H + 2p - d(kh - 1) - 1) / s) + 1 (ceil with
        ceil_mode); with return_indices, also the int64 indices of the same shape.
    """
    fn = "max_pool2d"
    if check:
        validate.flag(fn, "ceil_mode", ceil_mode)
        validate.flag(fn, "return_indices", return_indices)
        kernel, stride, padding = validate.pool_input(fn, input, kernel_size, stride, padding,
                                                      dilation, ceil_mode)
        dilation = as_pair(dilation)  # checked by pool_input
    else:
        kernel, padding, dilation = as_pair(kernel_size), as_pair(padding), as_pair(dilation)
        stride = kernel if stride is None else as_pair(stride)
    window = _Window(fn, input, kernel, stride, padding, dilation, ceil_mode)
    if return_indices or (input.requires_grad and torch.is_grad_enabled()):
        out, indices = _MaxPool.apply(input, window)
        return (out, indices) if return_indices else out
    # inference: only the values, no winners to remember
    x = window.pad(input, float("-inf"))
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, window.out_hw
    rows = _columns(x, 0, wo, sw).clone()  # (N, C, Hp, Wo)
    for j in range(1, kw):
        torch.maximum(rows, _columns(x, j * dw, wo, sw), out=rows)
    out = _rows(rows, 0, ho, sh).clone()  # (N, C, Ho, Wo)
    for i in range(1, kh):
        torch.maximum(out, _rows(rows, i * dh, ho, sh), out=out)
    return out.contiguous(memory_format=window.layout)


def avg_pool2d(
    input: torch.Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
    ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: int | None = None,
    *, check: bool = True,
) -> torch.Tensor:
    """2-D average pooling; padding counts as zeros in the mean (torch's default).

    Args:
        input: (N, C, H, W).
        kernel_size: window size, an int or (kh, kw).
        stride: step between windows; defaults to kernel_size.
        padding: zeros added on each side, at most half the window (as in torch).
        ceil_mode: round the output size up, as in `max_pool2d`.
        count_include_pad: divide by the window's size including its padding (True) or by
            the number of input pixels it covers (False). A window sticking out past the
            padding (ceil_mode) never counts the part outside.
        divisor_override: divide every sum by this instead.
        check: check the arguments first; a layer that has checked its input passes False.

    Returns:
        (N, C, H_out, W_out), H_out = floor((H + 2p - kh) / s) + 1 (ceil with ceil_mode).
    """
    fn = "avg_pool2d"
    if check:
        validate.flag(fn, "ceil_mode", ceil_mode)
        kernel, stride, padding = validate.pool_input(fn, input, kernel_size, stride, padding,
                                                      ceil_mode=ceil_mode)
        validate.flag(fn, "count_include_pad", count_include_pad)
        if divisor_override is not None:
            validate.positive_int(fn, "divisor_override", divisor_override)
    else:
        kernel, padding = as_pair(kernel_size), as_pair(padding)
        stride = kernel if stride is None else as_pair(stride)
    window = _Window(fn, input, kernel, stride, padding, (1, 1), ceil_mode)
    divisor = window.divisor(count_include_pad, divisor_override, input)
    return _AvgPool.apply(input, window, divisor)


class _Window:
    """Where a pooling window goes: output size, the padding each side, the layout.

    With ceil_mode the last window may reach past the right (bottom) padding; the input
    is padded that far too, so that every window is a plain strided view.
    """

    def __init__(self, fn, input, kernel, stride, padding, dilation, ceil_mode):
        self.kernel, self.stride, self.padding, self.dilation = kernel, stride, padding, dilation
        self.size = (input.shape[2], input.shape[3])
        self.out_hw = validate.pooled_size(fn, self.size, kernel, stride, padding, dilation, ceil_mode)
        # (before, after) on each axis: after covers the last window, even past the padding
        self.pads = tuple(
            (padding[a], max(0, (self.out_hw[a] - 1) * stride[a] + dilation[a] * (kernel[a] - 1)
                             + 1 - self.size[a] - padding[a]))
            for a in range(2)
        )
        self.layout = _memory_format(input)

    def pad(self, x: torch.Tensor, value: float) -> torch.Tensor:
        (top, bottom), (left, right) = self.pads
        return F.pad(x, (left, right, top, bottom), value=value) if top + bottom + left + right else x

    def first_pixels(self, axis: int) -> list[int]:
        """Along `axis`, the first tap of each window that lands in the input (torch's winner
        when all the window sees is -inf); n or more for a window whose dilated taps step
        over the whole input (taps -1 and 1 around a 1-pixel input)."""
        s, p, d = self.stride[axis], self.padding[axis], self.dilation[axis]
        return [o * s - p if o * s >= p else (o * s - p) % d for o in range(self.out_hw[axis])]

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        (top, _), (left, _) = self.pads
        return x[..., top: top + self.size[0], left: left + self.size[1]]

    def divisor(self, count_include_pad, divisor_override, like) -> float | torch.Tensor:
        """What each window's sum is divided by: a number, or one per output (Ho, Wo)."""
        if divisor_override is not None:
            return float(divisor_override)
        counts = []
        for a in range(2):
            k, s, p, n = self.kernel[a], self.stride[a], self.padding[a], self.size[a]
            per_axis = []
            for o in range(self.out_hw[a]):
                start, end = o * s - p, min(o * s - p + k, n + p)  # clipped to the padding
                if not count_include_pad:
                    start, end = max(start, 0), min(end, n)  # clipped to the input
                per_axis.append(end - start)
            counts.append(per_axis)
        if len(set(counts[0])) <= 1 and len(set(counts[1])) <= 1:  # the same for every window
            return float(counts[0][0] * counts[1][0]) if counts[0] and counts[1] else 1.0
        h = torch.tensor(counts[0], dtype=like.dtype, device=like.device)
        w = torch.tensor(counts[1], dtype=like.dtype, device=like.device)
        return h[:, None] * w[None, :]  # (Ho, Wo)


def _columns(x, j, size, stride):
    """Columns j, j + stride, ... (`size` of them) of (..., W)."""
    return x[..., j: j + stride * (size - 1) + 1: stride]


def _rows(x, i, size, stride):
    """Rows i, i + stride, ... (`size` of them) of (..., H, W)."""
    return x[..., i: i + stride * (size - 1) + 1: stride, :]


class _MaxPool(torch.autograd.Function):
    """Separable max: first across each row's window, then across the rows.

    Each pass is a running maximum over the window's taps, one element-wise
    `torch.maximum` per tap on strided views, remembering in a byte per output which
    tap won. That is a few streaming passes over memory; a reduction over a window
    dimension of 3 (`max(dim=-1)` on an as_strided view, the first version) runs an
    inner loop of length 3 per output and was about 4x slower here.
    """

    @staticmethod
    def forward(ctx, input, window):
        (kh, kw), (sh, sw), (dh, dw), (ho, wo) = window.kernel, window.stride, window.dilation, window.out_hw
        x = window.pad(input, float("-inf"))
        rows, col = _running_max(x, [_columns(x, j * dw, wo, sw) for j in range(kw)])  # (N, C, Hp, Wo)
        out, row = _running_max(rows, [_rows(rows, i * dh, ho, sh) for i in range(kh)])  # (N, C, Ho, Wo)
        # The winner of output (r, s): row r*sh + dh*row[r, s], then its column in that row.
        winner_row = row.long() * dh + torch.arange(0, sh * ho, sh, device=row.device).view(ho, 1)
        winner_col = col.gather(2, winner_row).long() * dw + torch.arange(0, sw * wo, sw, device=row.device)
        (top, _), (left, _) = window.pads
        indices = (winner_row - top) * window.size[1] + (winner_col - left)  # into H*W, unpadded
        ctx.empty = None
        if top or left:  # a -inf maximum may have come from the padding: point into the input
            indices, ctx.empty = _first_pixel_where_minus_inf(out, indices, window)
        ctx.save_for_backward(indices)
        ctx.window = window
        ctx.mark_non_differentiable(indices)
        layout = window.layout
        return out.contiguous(memory_format=layout), indices.contiguous(memory_format=layout)

    @staticmethod
    def backward(ctx, grad_out, _):
        # Only out-of-place operations: the gradient is differentiable in grad_out (a
        # second derivative through a max pool is a gather at the same winners).
        (indices,) = ctx.saved_tensors
        if ctx.empty is not None:  # a window with no input pixel passes no gradient back
            grad_out = grad_out.masked_fill(ctx.empty, 0.0)
        (h, w), (ho, wo) = ctx.window.size, ctx.window.out_hw
        n, c = grad_out.shape[:2]
        grad_x = grad_out.new_zeros((n, c, h * w)).scatter_add(  # overlapping windows add up
            2, indices.reshape(n, c, ho * wo), grad_out.reshape(n, c, ho * wo))
        return _in_layout(grad_x.view(n, c, h, w), ctx.window.layout), None


def _first_pixel_where_minus_inf(out, indices, window):
    """Indices as torch's: where a window's maximum is -inf, its first input pixel, not the
    padding tap that won the tie. Also the (Ho, Wo) mask of windows with no input pixel
    (None if there are none): their output is -inf, as in torch, and torch's index points
    past the input or into another window; ours is clamped into the last row and column."""
    (h, w), device = window.size, indices.device
    rows, cols = window.first_pixels(0), window.first_pixels(1)
    r, c = torch.tensor(rows, device=device), torch.tensor(cols, device=device)
    first = r.clamp(max=h - 1)[:, None] * w + c.clamp(max=w - 1)  # (Ho, Wo)
    indices = torch.where(out == float("-inf"), first, indices)
    empty = None if max(rows) < h and max(cols) < w else (r >= h)[:, None] | (c >= w)
    return indices, empty


def _running_max(x: torch.Tensor, taps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Element-wise maximum of the tap views, and which tap (0, 1, ...) holds it (uint8).

    Ties go to the first tap, as in torch; a NaN wins over any number and stays (torch
    propagates NaN through a max pool). A tap that beats every tap before it is the
    winner so far, so the winner is the last such tap: a running maximum of t * better.
    (That arithmetic was 40x faster here than `masked_fill_`, and a first `maximum` out of
    place 4x faster than cloning the strided first tap.)
    """
    best, winner = taps[0], None
    for t, view in enumerate(taps[1:], 1):
        better = view > best  # strictly: an equal value later does not take the place
        better |= view.isnan()
        claim = better.view(torch.uint8) * t  # t where this tap is the new maximum, else 0
        winner = claim if winner is None else torch.maximum(winner, claim, out=winner)
        best = torch.maximum(best, view) if t == 1 else torch.maximum(best, view, out=best)
    if winner is None:  # a window of one tap
        return best.clone(), torch.zeros_like(best, dtype=torch.uint8)
    return best, winner


class _AvgPool(torch.autograd.Function):
    """Separable mean over a zero-padded input: sum across columns, then across rows."""

    @staticmethod
    def forward(ctx, input, window, divisor):
        (kh, kw), (sh, sw), (ho, wo) = window.kernel, window.stride, window.out_hw
        x = window.pad(input, 0.0)
        n, c, hp, wp = x.shape
        s_n, s_c, s_h, s_w = x.stride()
        row_windows = x.as_strided((n, c, hp, wo, kw), (s_n, s_c, s_h, s_w * sw, s_w), x.storage_offset())
        rows = row_windows.sum(dim=-1)  # (N, C, Hp, Wo): sums over each row's window
        r_n, r_c, r_h, r_w = rows.stride()
        col_windows = rows.as_strided((n, c, ho, wo, kh), (r_n, r_c, r_h * sh, r_w, r_h))
        out = col_windows.sum(dim=-1)  # (N, C, Ho, Wo)
        out /= divisor
        ctx.window, ctx.divisor, ctx.padded = window, divisor, x.shape
        return out.contiguous(memory_format=window.layout)

    @staticmethod
    def backward(ctx, grad_out):
        # In-place adds into fresh zeros only, which autograd records: the gradient stays
        # differentiable in grad_out for a second derivative.
        window, shape = ctx.window, ctx.padded
        (kh, kw), (sh, sw), (ho, wo) = window.kernel, window.stride, window.out_hw
        share = grad_out / ctx.divisor  # each input in the window gets an equal share
        grad_rows = share.new_zeros(shape[:3] + (wo,))  # (N, C, Hp, Wo)
        for i in range(kh):
            _rows(grad_rows, i, ho, sh).add_(share)
        grad_x = share.new_zeros(shape)  # (N, C, Hp, Wp)
        for j in range(kw):
            _columns(grad_x, j, wo, sw).add_(grad_rows)
        return _in_layout(window.unpad(grad_x), window.layout), None, None
