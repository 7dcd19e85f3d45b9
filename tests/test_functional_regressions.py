"""labcode.functional under real training (issue 12): in-place ops after a conv, gradients
in the input's layout, empty batches, channels_last, attention masks, mixed dtypes,
second derivatives, and torch's full pooling signatures. Each test failed before its fix."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings, strategies as st
from torch import nn
from torch.autograd import gradgradcheck

import labcode.functional as LF
from labcode.layers import AvgPool2d, MaxPool2d, set_backend

SETTINGS = settings(max_examples=40, deadline=None)
F64 = torch.float64

# (weight shape, conv kwargs): dense, grouped, depthwise (with multiplier), patch / 1x1
CONVS = [
    ((6, 4, 3, 3), dict(padding=1)),
    ((6, 2, 3, 2), dict(padding=(1, 0), stride=(2, 1), dilation=(1, 2), groups=2)),
    ((4, 1, 3, 3), dict(padding=1, groups=4)),
    ((8, 1, 3, 3), dict(padding=1, stride=2, groups=4)),
    ((5, 4, 2, 2), dict(stride=2)),
    ((5, 4, 1, 1), dict()),
]


def channels_last(x):
    return x.contiguous(memory_format=torch.channels_last)


def assert_close_and_grads(ours_fn, theirs_fn, inputs, tol=dict(rtol=1e-9, atol=1e-9)):
    """Same output and same gradient for every input that requires one."""
    ours, theirs = ours_fn(*inputs), theirs_fn(*inputs)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, **tol)
    wanted = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    grad = torch.randn_like(theirs)
    if ours.numel() == 0:
        grad = grad.view_as(ours)
    for a, b in zip(torch.autograd.grad(ours, wanted, grad, allow_unused=True),
                    torch.autograd.grad(theirs, wanted, grad, allow_unused=True)):
        torch.testing.assert_close(a, b, **tol)


# -- defect 1: a conv's output is a fresh tensor, so an in-place op may follow -------------

@pytest.mark.parametrize("size", [8, 3])  # 3: a 1x1 output
@pytest.mark.parametrize("batch", [2, 0])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_inplace_op_after_conv(size, batch, layout):
    x = torch.randn(batch, 3, size, size)
    x = channels_last(x) if layout == "channels_last" else x
    for w_shape, kwargs in [((4, 3, 3, 3), dict(padding=0)), ((6, 1, 3, 3), dict(groups=3))]:
        w = torch.randn(*w_shape, requires_grad=True)
        out = torch.relu_(LF.conv2d(x, w, **kwargs))
        theirs = torch.relu(F.conv2d(x, w, **kwargs))
        torch.testing.assert_close(out, theirs, rtol=1e-4, atol=1e-4)
        out.sum().backward()
        assert w.grad is not None and w.grad.shape == w.shape


def test_alexnet_small_trains_on_channels_last_with_scratch():
    from labcode.models import alexnet_small
    torch.manual_seed(0)
    model = set_backend(alexnet_small(in_channels=3), "scratch").to(memory_format=torch.channels_last)
    x = channels_last(torch.randn(2, 3, 28, 28))
    F.cross_entropy(model(x), torch.tensor([0, 1])).backward()
    assert all(p.grad is not None for p in model.parameters())


# -- defect 2: gradients come back in their input's layout, and right through batch norm --

def test_batchnorm_silu_conv_gradient_at_batch_one():
    torch.manual_seed(0)
    x = torch.randn(1, 16, 14, 14, requires_grad=True)
    w = torch.randn(8, 16, 3, 3)
    bn = nn.BatchNorm2d(16)
    grads = []
    for conv in (LF.conv2d, F.conv2d):
        (g,) = torch.autograd.grad(conv(F.silu(bn(x)), w, padding=1).pow(2).sum(), x)
        grads.append(g)
    scale = grads[1].abs().max()
    assert (grads[0] - grads[1]).abs().max() <= 1e-4 * scale


@pytest.mark.parametrize("w_shape, kwargs", CONVS)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_conv_input_gradient_has_the_input_layout(w_shape, kwargs, layout):
    x = torch.randn(1, 4, 7, 6, dtype=F64).contiguous(memory_format=layout).requires_grad_()
    w = torch.randn(*w_shape, dtype=F64)
    (g,) = torch.autograd.grad(LF.conv2d(x, w, **kwargs).sum(), x)
    assert g.is_contiguous(memory_format=layout), g.stride()


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_pool_input_gradient_has_the_input_layout(layout):
    x = torch.randn(1, 3, 7, 6, dtype=F64).contiguous(memory_format=layout).requires_grad_()
    for pool in (lambda t: LF.max_pool2d(t, 3, 2, 1), lambda t: LF.avg_pool2d(t, 3, 2, 1)):
        (g,) = torch.autograd.grad(pool(x).sum(), x)
        assert g.is_contiguous(memory_format=layout), g.stride()


# -- defect 3: empty batches and channels_last, every op equal to torch --------------------

@pytest.mark.parametrize("batch", [0, 2])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("w_shape, kwargs", CONVS)
def test_conv_empty_batch_and_channels_last(batch, layout, w_shape, kwargs):
    x = torch.randn(batch, 4, 7, 6, dtype=F64).contiguous(memory_format=layout).requires_grad_()
    w = torch.randn(*w_shape, dtype=F64, requires_grad=True)
    b = torch.randn(w_shape[0], dtype=F64, requires_grad=True)
    assert_close_and_grads(lambda *t: LF.conv2d(*t, **kwargs), lambda *t: F.conv2d(*t, **kwargs), (x, w, b))
    if layout == torch.channels_last and batch:
        assert LF.conv2d(x, w, b, **kwargs).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("batch", [0, 2])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_pools_empty_batch_and_channels_last(batch, layout):
    x = torch.randn(batch, 3, 9, 8, dtype=F64).contiguous(memory_format=layout).requires_grad_()
    for args in [(3, 2), (3, 2, 1), ((2, 3), (1, 2), (1, 1))]:
        assert_close_and_grads(lambda t: LF.max_pool2d(t, *args), lambda t: F.max_pool2d(t, *args), (x,))
        assert_close_and_grads(lambda t: LF.avg_pool2d(t, *args), lambda t: F.avg_pool2d(t, *args), (x,))


@pytest.mark.parametrize("shape, w_shape", [((0, 5), (3, 5)), ((2, 4, 0), (3, 0)), ((0, 4, 5), (3, 5))])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_empty(shape, w_shape, bias):
    x = torch.randn(*shape, dtype=F64, requires_grad=True)
    w = torch.randn(*w_shape, dtype=F64, requires_grad=True)
    b = torch.randn(w_shape[0], dtype=F64, requires_grad=True) if bias else None
    torch.testing.assert_close(LF.linear(x, w, b), F.linear(x, w, b))


def test_attention_empty_batch():
    q, k, v = (torch.randn(0, 2, 5, 4, dtype=F64, requires_grad=True) for _ in range(3))
    assert_close_and_grads(LF.scaled_dot_product_attention, F.scaled_dot_product_attention, (q, k, v))


# -- defect 4: attention masks and dtypes --------------------------------------------------

@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_masked_row_gives_zeros_as_torch(kind):
    q = torch.randn(2, 3, 4, dtype=F64, requires_grad=True)
    k = torch.randn(2, 5, 4, dtype=F64, requires_grad=True)
    v = torch.randn(2, 5, 6, dtype=F64, requires_grad=True)
    keep = torch.rand(3, 5) > 0.3
    keep[:, 0] = True
    keep[1] = False  # query 1 may attend to no key at all
    mask = keep if kind == "bool" else torch.zeros(3, 5, dtype=F64).masked_fill(~keep, float("-inf"))
    ours = LF.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(ours[:, 1], torch.zeros(2, 6, dtype=F64))
    assert_close_and_grads(
        lambda *t: LF.scaled_dot_product_attention(*t, attn_mask=mask),
        lambda *t: F.scaled_dot_product_attention(*t, attn_mask=mask), (q, k, v))
    weights = LF.attention_weights(q, k, mask)
    assert torch.isfinite(weights).all() and torch.equal(weights[:, 1], torch.zeros(2, 5, dtype=F64))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
def test_integer_mask_is_refused(dtype):
    q, k, v = (torch.randn(1, 3, 4) for _ in range(3))
    mask = torch.ones(3, 3, dtype=dtype)
    with pytest.raises(TypeError, match=rf"attn_mask must be a bool tensor .* got dtype {dtype}"):
        LF.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with pytest.raises(TypeError, match="attn_mask must be a bool"):
        LF.attention_weights(q, k, mask)


def test_mixed_dtypes_are_named():
    q, k, v = torch.randn(1, 3, 4), torch.randn(1, 3, 4, dtype=F64), torch.randn(1, 3, 4)
    with pytest.raises(TypeError, match=r"query, key and value must have the same dtype, got "
                                        r"query torch.float32, key torch.float64, value torch.float32"):
        LF.scaled_dot_product_attention(q, k, v)
    with pytest.raises(TypeError, match="query and key must have the same dtype"):
        LF.attention_weights(q, k)
    with pytest.raises(TypeError, match=r"conv2d: input and weight must have the same dtype, got "
                                        r"input torch.float32, weight torch.float64"):
        LF.conv2d(torch.randn(1, 2, 5, 5), torch.randn(2, 2, 3, 3, dtype=F64))
    with pytest.raises(TypeError, match="bias torch.float64"):
        LF.conv2d(torch.randn(1, 2, 5, 5), torch.randn(2, 2, 3, 3), torch.randn(2, dtype=F64))


def test_mixed_dtypes_are_fine_under_autocast():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(2, 2, 3, 3).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert LF.conv2d(x, w).dtype == torch.bfloat16
        q = torch.randn(1, 3, 4)
        assert LF.scaled_dot_product_attention(q, q.bfloat16(), q).shape == (1, 3, 4)


# -- defect 5: second derivatives, or a gradient penalty -----------------------------------

@pytest.mark.parametrize("w_shape, kwargs", CONVS)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_conv_double_backward(w_shape, kwargs, layout):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 4, dtype=F64).contiguous(memory_format=layout).requires_grad_()
    w = torch.randn(*w_shape, dtype=F64, requires_grad=True)
    b = torch.randn(w_shape[0], dtype=F64, requires_grad=True)
    assert gradgradcheck(lambda *t: LF.conv2d(*t, **kwargs), (x, w, b))


def test_gradient_penalty_through_conv_and_pool_equals_torch():
    """d/dw of |d loss / d x|^2, the gradient penalty of WGAN-GP, through conv and pools."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 9, dtype=F64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=F64, requires_grad=True)
    results = []
    for conv, maxp, avgp in [(LF.conv2d, LF.max_pool2d, LF.avg_pool2d), (F.conv2d, F.max_pool2d, F.avg_pool2d)]:
        out = avgp(maxp(conv(x, w, padding=1).tanh(), 3, 2, 1), 2)
        (gx,) = torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)
        (gw,) = torch.autograd.grad(gx.pow(2).sum(), [w])
        results.append(gw)
    assert results[0] is not None
    torch.testing.assert_close(results[0], results[1], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_double_backward(kind):
    x = torch.randn(2, 2, 7, 6, dtype=F64, requires_grad=True)
    if kind == "max":
        fns = [lambda t: LF.max_pool2d(t, 3, 2, 1), lambda t: LF.max_pool2d(t, 2, 1, 1, 2, True)]
    else:
        fns = [lambda t: LF.avg_pool2d(t, 3, 2, 1), lambda t: LF.avg_pool2d(t, 3, 2, 1, True, False)]
    for fn in fns:
        assert gradgradcheck(fn, (x,))


# -- defect 6: torch's full pooling signatures, and conv's dtypes --------------------------

@st.composite
def pool_configs(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    reach = [dilation[a] * (kernel[a] - 1) + 1 for a in range(2)]
    size = [max(1, reach[a] - 2 * padding[a], kernel[a] - 2 * padding[a]) + draw(st.integers(0, 5))
            for a in range(2)]
    return dict(
        batch=draw(st.integers(0, 2)), size=size, kernel=kernel, stride=stride, padding=padding,
        dilation=dilation, ceil_mode=draw(st.booleans()), count_include_pad=draw(st.booleans()),
        divisor_override=draw(st.sampled_from([None, 1, 5])), channels_last=draw(st.booleans()),
        ties=draw(st.booleans()),
    )


def pool_input(cfg):
    shape = (cfg["batch"], 2, *cfg["size"])
    x = torch.randint(-1, 2, shape).to(F64) if cfg["ties"] else torch.randn(*shape, dtype=F64)
    x = channels_last(x) if cfg["channels_last"] else x
    return x.requires_grad_()


@SETTINGS
@given(pool_configs())
@example(dict(  # dilation 2 steps over the one row: windows with no input pixel in them
    batch=2, size=[1, 4], kernel=(2, 3), stride=(1, 1), padding=(1, 1), dilation=(2, 1),
    ceil_mode=False, count_include_pad=True, divisor_override=None, channels_last=True, ties=False))
def test_max_pool2d_full_signature_matches_torch(cfg):
    x = pool_input(cfg)
    args = (cfg["kernel"], cfg["stride"], cfg["padding"], cfg["dilation"], cfg["ceil_mode"])
    theirs, their_indices = F.max_pool2d(x, *args, return_indices=True)
    ours, our_indices = LF.max_pool2d(x, *args, return_indices=True)
    torch.testing.assert_close(ours, theirs)
    with torch.no_grad():
        torch.testing.assert_close(LF.max_pool2d(x, *args), theirs)
    empty = outside_the_input(x, args)
    if not empty.any():
        assert torch.equal(our_indices, their_indices)
        assert_close_and_grads(lambda t: LF.max_pool2d(t, *args), lambda t: F.max_pool2d(t, *args), (x,))
        return
    # Torch's index for a window with no input pixel is out of range or in another window
    # (and its backward then writes there): ours is in range and passes no gradient back.
    assert torch.equal(our_indices[..., ~empty], their_indices[..., ~empty])
    assert ((0 <= our_indices) & (our_indices < x.shape[2] * x.shape[3])).all()
    grad = torch.randn_like(ours)
    (ours_grad,) = torch.autograd.grad(ours, x, grad)
    torch.testing.assert_close(ours_grad, unpool_gradient(grad.masked_fill(empty, 0), their_indices, x))


def outside_the_input(x, args):
    """(H_out, W_out): True for a window that holds no input pixel (a dilated window that
    steps over the whole input), which is -inf however large the input's values."""
    ones = torch.ones(1, 1, *x.shape[2:], dtype=x.dtype)
    return torch.isinf(F.max_pool2d(ones, *args))[0, 0]


def unpool_gradient(grad, indices, x):
    """The gradient of a max pool: each output's gradient added to its winner in x (an
    index out of range is clamped in: it must carry a zero gradient)."""
    n, c, h, w = x.shape
    flat = torch.zeros(n, c, h * w, dtype=grad.dtype).scatter_add(
        2, indices.clamp(0, h * w - 1).flatten(2), grad.flatten(2))
    return flat.view(n, c, h, w)


@SETTINGS
@given(pool_configs())
def test_avg_pool2d_full_signature_matches_torch(cfg):
    x = pool_input(cfg)
    args = (cfg["kernel"], cfg["stride"], cfg["padding"], cfg["ceil_mode"], cfg["count_include_pad"],
            cfg["divisor_override"])
    assert_close_and_grads(lambda t: LF.avg_pool2d(t, *args), lambda t: F.avg_pool2d(t, *args), (x,))


@pytest.mark.parametrize("cls, torch_cls, kwargs", [
    (MaxPool2d, nn.MaxPool2d, dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)),
    (MaxPool2d, nn.MaxPool2d, dict(kernel_size=(3, 2), stride=2, ceil_mode=True)),
    (AvgPool2d, nn.AvgPool2d, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    (AvgPool2d, nn.AvgPool2d, dict(kernel_size=2, divisor_override=3)),
])
def test_pool_layers_take_torchs_arguments(cls, torch_cls, kwargs):
    x = torch.randn(2, 3, 10, 9, dtype=F64, requires_grad=True)
    ours = set_backend(cls(**kwargs), "scratch")
    assert_close_and_grads(ours, torch_cls(**kwargs), (x,))


def test_max_pool_layer_returns_indices():
    x = torch.randn(2, 3, 10, 9)
    ours = set_backend(MaxPool2d(3, 2, return_indices=True), "scratch")(x)
    theirs = nn.MaxPool2d(3, 2, return_indices=True)(x)
    torch.testing.assert_close(ours[0], theirs[0])
    assert torch.equal(ours[1], theirs[1])


def test_pool_argument_errors():
    x = torch.randn(1, 1, 5, 5)
    with pytest.raises(TypeError, match="ceil_mode must be True or False, got 1"):
        LF.max_pool2d(x, 2, ceil_mode=1)
    with pytest.raises(ValueError, match="divisor_override must be at least 1, got 0"):
        LF.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(ValueError, match="dilation must be at least 1"):
        LF.max_pool2d(x, 2, dilation=0)
    with pytest.raises(ValueError, match="output would be empty"):
        LF.max_pool2d(x, 3, dilation=3)


# -- defect 7: with ceil_mode torch takes a window larger than the padded input ------------

def _shape_or_error(pool, x, *args):
    try:
        return tuple(pool(x, *args).shape)
    except (RuntimeError, ValueError) as error:
        return type(error)


def test_pools_accept_exactly_the_windows_torch_accepts():
    """torch's rule: the output length, ceil_mode's included, must be at least 1. With
    ceil_mode a window may then be larger than the padded input (2x2 input, kernel 3,
    stride 2: one window)."""
    for h, w, k, s, d, ceil in itertools.product([1, 2, 3, 4], [2, 3], [1, 2, 3, 4], [1, 2, 3],
                                                 [1, 2], [False, True]):
        x = torch.randn(1, 2, h, w, dtype=F64)
        for p in range(k // 2 + 1):
            pools = [(LF.max_pool2d, F.max_pool2d, (k, s, p, d, ceil))]
            if d == 1:
                pools.append((LF.avg_pool2d, F.avg_pool2d, (k, s, p, ceil)))
            for ours_fn, theirs_fn, args in pools:
                theirs = _shape_or_error(theirs_fn, x, *args)
                ours = _shape_or_error(ours_fn, x, *args)
                where = f"{ours_fn.__name__}{(h, w), args}"
                assert ours == (ValueError if theirs is RuntimeError else theirs), where
                if isinstance(theirs, tuple):
                    torch.testing.assert_close(ours_fn(x, *args), theirs_fn(x, *args), msg=where)


# (H, W), kernel, stride, padding: torch takes each only with ceil_mode
CEIL_ONLY = [((2, 2), 3, 2, 0), ((3, 3), 4, 2, 0), ((1, 3), (4, 2), (2, 1), (1, 0)), ((2, 5), 3, 3, 0)]


@pytest.mark.parametrize("size, kernel, stride, padding", CEIL_ONLY)
def test_ceil_mode_window_larger_than_the_padded_input(size, kernel, stride, padding):
    x = torch.randn(2, 3, *size, dtype=F64, requires_grad=True)
    args = (kernel, stride, padding, 1, True)
    theirs, their_indices = F.max_pool2d(x, *args, return_indices=True)
    ours, our_indices = LF.max_pool2d(x, *args, return_indices=True)
    torch.testing.assert_close(ours, theirs)
    assert torch.equal(our_indices, their_indices)
    assert_close_and_grads(lambda t: LF.max_pool2d(t, *args), lambda t: F.max_pool2d(t, *args), (x,))
    for count_include_pad in (True, False):
        args = (kernel, stride, padding, True, count_include_pad)
        assert_close_and_grads(lambda t: LF.avg_pool2d(t, *args), lambda t: F.avg_pool2d(t, *args), (x,))
    for backend in ("scratch", "torch"):
        for ours_layer, torch_layer in [
            (MaxPool2d(kernel, stride, padding, ceil_mode=True), nn.MaxPool2d(kernel, stride, padding, ceil_mode=True)),
            (AvgPool2d(kernel, stride, padding, ceil_mode=True), nn.AvgPool2d(kernel, stride, padding, ceil_mode=True)),
        ]:
            assert_close_and_grads(set_backend(ours_layer, backend), torch_layer, (x,))
    # without ceil_mode both refuse it
    with pytest.raises(RuntimeError):
        F.max_pool2d(x, kernel, stride, padding)
    with pytest.raises(ValueError, match=r"does not fit the padded input"):
        LF.max_pool2d(x, kernel, stride, padding)


# -- defect 8: max pooling's indices where the maximum is -inf ---------------------------

def test_max_pool2d_window_with_no_input_pixel():
    """Dilation 2 steps over a 1-pixel-high input (taps at rows -1 and 1): every window is
    padding only, -inf as in torch. Torch's indices (3, 4, 5 here) are out of range and its
    backward writes out of bounds; ours are in range and pass no gradient back."""
    x = torch.randn(2, 3, 1, 3, dtype=F64, requires_grad=True)
    args = (2, 1, 1, 2)  # kernel, stride, padding, dilation
    theirs = F.max_pool2d(x, *args)
    ours, indices = LF.max_pool2d(x, *args, return_indices=True)
    torch.testing.assert_close(ours, theirs)
    assert ours.isneginf().all()
    assert 0 <= indices.min() and indices.max() < 3
    (grad,) = torch.autograd.grad(ours, x, torch.randn_like(ours))
    assert torch.equal(grad, torch.zeros_like(x))
    with torch.no_grad():
        torch.testing.assert_close(LF.max_pool2d(x, *args), theirs)


@pytest.mark.parametrize("args", [(3, 1, 1), (3, 2, 1, 1, True), ((3, 2), 1, (1, 1), 2)])
def test_max_pool2d_minus_infinity_input_points_at_the_first_pixel(args):
    """Where every input pixel a window sees is -inf, torch's winner is the window's first
    input pixel, not the padding before it."""
    x = torch.randn(2, 2, 5, 4, dtype=F64)
    x[0] = float("-inf")
    x[1, :, :2] = float("-inf")
    x.requires_grad_()
    theirs, their_indices = F.max_pool2d(x, *args, return_indices=True)
    ours, our_indices = LF.max_pool2d(x, *args, return_indices=True)
    assert torch.equal(our_indices, their_indices)
    assert_close_and_grads(lambda t: LF.max_pool2d(t, *args), lambda t: F.max_pool2d(t, *args), (x,))
