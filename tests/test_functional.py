"""labcode.functional against torch.nn.functional: outputs and gradients on many
random configurations (hypothesis), in float64 so the tolerance can be tight."""
from __future__ import annotations

from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import labcode.functional as LF
import labcode.functional.conv as conv_module

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
SETTINGS = settings(max_examples=40, deadline=None)
TOL = dict(rtol=1e-9, atol=1e-9)


def assert_same(ours, theirs, tol=TOL):
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    torch.testing.assert_close(ours, theirs, **tol)


def grads(out, inputs, grad):
    inputs = [t for t in inputs if t is not None]
    return torch.autograd.grad(out, inputs, grad)


def leaf(*shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype).requires_grad_()


def torch_padding(padding, kernel, dilation):
    """labcode's padding argument as torch's (torch has no 'full')."""
    if padding == "full":
        return tuple(d * (k - 1) for k, d in zip(kernel, dilation))
    return padding


@st.composite
def conv_configs(draw, depthwise=False):
    if depthwise:
        groups = draw(st.integers(2, 5))
        in_channels = groups
        out_channels = groups * draw(st.integers(1, 2))  # channel multiplier
    else:
        groups = draw(st.sampled_from([1, 1, 2, 3]))
        in_channels = groups * draw(st.integers(1, 3))
        out_channels = groups * draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    modes = ["valid", "full", 0, 1, (draw(st.integers(0, 2)), draw(st.integers(0, 2)))]
    if stride == (1, 1):
        modes.append("same")
    padding = draw(st.sampled_from(modes))
    pads = [LF.padding_amount(padding if isinstance(padding, (str, int)) else padding[a],
                              kernel[a], dilation[a]) for a in range(2)]
    reach = [dilation[a] * (kernel[a] - 1) + 1 for a in range(2)]
    size = [max(1, reach[a] - sum(pads[a])) + draw(st.integers(0, 5)) for a in range(2)]
    return dict(
        batch=draw(st.integers(1, 2)), in_channels=in_channels, out_channels=out_channels,
        size=size, kernel=kernel, stride=stride, dilation=dilation, padding=padding,
        groups=groups, bias=draw(st.booleans()), whole_batch=draw(st.booleans()),
    )


def check_conv(cfg):
    x = leaf(cfg["batch"], cfg["in_channels"], *cfg["size"])
    w = leaf(cfg["out_channels"], cfg["in_channels"] // cfg["groups"], *cfg["kernel"])
    b = leaf(cfg["out_channels"]) if cfg["bias"] else None
    args = (cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    # the whole batch's windows in one chunk, or one image per chunk
    limit = 1 << 30 if cfg["whole_batch"] else 0
    with mock.patch.object(conv_module, "CHUNK_BYTES", limit):
        ours = LF.conv2d(x, w, b, *args)
        grad = torch.randn_like(ours)
        ours_grads = grads(ours, [x, w, b], grad)
    padding = torch_padding(cfg["padding"], cfg["kernel"], cfg["dilation"])
    theirs = F.conv2d(x, w, b, cfg["stride"], padding, cfg["dilation"], cfg["groups"])
    assert_same(ours, theirs)
    for a, t in zip(ours_grads, grads(theirs, [x, w, b], grad)):
        assert_same(a, t)


@SETTINGS
@given(conv_configs())
def test_conv2d_matches_torch(cfg):
    check_conv(cfg)


@SETTINGS
@given(conv_configs(depthwise=True))
def test_depthwise_conv2d_matches_torch(cfg):
    check_conv(cfg)


def test_conv2d_architecture_shapes():
    """The special paths on the shapes the book uses: patch embedding, 1x1, AlexNet conv1."""
    cases = [  # (input shape, out channels, kernel, stride, padding, groups)
        ((2, 3, 32, 32), 8, 16, 16, 0, 1),  # ViT patch embedding
        ((2, 3, 35, 33), 8, 16, 16, 0, 1),  # sizes not divisible by the patch
        ((2, 6, 7, 7), 5, 1, 1, 0, 1),  # pointwise
        ((1, 3, 45, 45), 4, 11, 4, 2, 1),  # AlexNet conv1 at a small size
        ((2, 8, 9, 9), 6, 5, 1, 2, 2),  # AlexNet-2012 grouped conv2
        ((2, 8, 10, 10), 8, 3, 2, 1, 8),  # strided depthwise
    ]
    for shape, out_channels, k, s, p, g in cases:
        x = leaf(*shape)
        w = leaf(out_channels, shape[1] // g, k, k)
        b = leaf(out_channels)
        ours, theirs = LF.conv2d(x, w, b, s, p, 1, g), F.conv2d(x, w, b, s, p, 1, g)
        assert_same(ours, theirs)
        grad = torch.randn_like(ours)
        for a, t in zip(grads(ours, [x, w, b], grad), grads(theirs, [x, w, b], grad)):
            assert_same(a, t)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("stride, size", [((2, 2), (10, 10)), ((2, 3), (11, 9)), ((3, 2), (7, 8))])
def test_strided_depthwise_phases(layout, stride, size):
    """Strided depthwise reads the input's stride-by-stride phases (dense copies on a
    channels-first input, views on channels-last); odd sizes pad the last phase."""
    for limit in (1 << 30, 1):  # the whole batch at once, and one image at a time
        with mock.patch.object(conv_module, "DEPTHWISE_CHUNK_BYTES", limit):
            x = torch.randn(3, 6, *size, dtype=torch.float64).contiguous(memory_format=layout)
            x.requires_grad_()
            w, b = leaf(6, 1, 3, 3), leaf(6)
            ours, theirs = LF.conv2d(x, w, b, stride, 1, 1, 6), F.conv2d(x, w, b, stride, 1, 1, 6)
            assert_same(ours, theirs)
            grad = torch.randn_like(ours)
            ours_grads, their_grads = grads(ours, [x, w, b], grad), grads(theirs, [x, w, b], grad)
            for a, t in zip(ours_grads, their_grads):
                assert_same(a, t)
            assert ours_grads[0].is_contiguous(memory_format=layout)


@pytest.mark.parametrize("size, kernel, dilation, groups", [(1, 1, 2, 1), (3, 3, 1, 1), (4, 2, 1, 2), (3, 3, 1, 4)])
def test_conv2d_leaves_its_arguments_alone(size, kernel, dilation, groups):
    """A single output pixel once made the output share the bias's memory."""
    x = torch.randn(1, 4, size, size, dtype=torch.float64)
    w = torch.randn(4, 4 // groups, kernel, kernel, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64)
    saved = [t.clone() for t in (x, w, b)]
    for limit in (1 << 30, 0):
        with mock.patch.object(conv_module, "CHUNK_BYTES", limit):
            for _ in range(2):
                out = LF.conv2d(x, w, b, dilation=dilation, groups=groups)
                assert_same(out, F.conv2d(x, w, b, dilation=dilation, groups=groups))
    for t, before in zip((x, w, b), saved):
        assert torch.equal(t, before)


def test_conv2d_input_gradient_is_conv_with_flipped_kernel():
    """dL/dx = conv(grad spread out by the stride, kernel flipped, channels swapped)."""
    for stride, padding, size in [(1, 1, 7), (2, 0, 8), (3, 1, 10)]:
        x = leaf(2, 3, size, size)
        w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
        out = LF.conv2d(x, w, stride=stride, padding=padding)
        grad = torch.randn_like(out)
        (grad_x,) = torch.autograd.grad(out, x, grad)
        ho = out.shape[-1]
        spread = grad.new_zeros(2, 4, (ho - 1) * stride + 1, (ho - 1) * stride + 1)
        spread[:, :, ::stride, ::stride] = grad
        border = 3 - 1 - padding
        extra = (size + 2 * padding - 3) % stride  # rows no window reached get no gradient
        spread = F.pad(spread, (border, border + extra, border, border + extra))
        flipped = w.flip(2, 3).transpose(0, 1)  # (3, 4, 3, 3)
        assert_same(LF.conv2d(spread, flipped), grad_x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_conv2d_dtypes(dtype):
    x = torch.randn(2, 4, 9, 9)
    w = torch.randn(6, 4, 3, 3) * 0.2
    for groups, weight in [(1, w), (4, torch.randn(4, 1, 3, 3) * 0.2)]:
        xl, wl = x.to(dtype).requires_grad_(), weight.to(dtype).requires_grad_()
        out = LF.conv2d(xl, wl, padding=1, groups=groups)
        assert out.dtype == dtype
        reference = F.conv2d(xl.detach().float(), wl.detach().float(), padding=1, groups=groups)
        tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=5e-2)
        torch.testing.assert_close(out.float(), reference, **tol)
        out.float().sum().backward()
        assert xl.grad.dtype == dtype and wl.grad.dtype == dtype


def test_conv2d_keeps_channels_last():
    x = torch.randn(2, 8, 6, 6).to(memory_format=torch.channels_last)
    w = torch.randn(4, 8, 3, 3)
    for groups, weight in [(1, w), (8, torch.randn(8, 1, 3, 3))]:
        ours = LF.conv2d(x, weight, padding=1, groups=groups)
        theirs = F.conv2d(x, weight, padding=1, groups=groups)
        assert ours.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    assert LF.conv2d(x.contiguous(), w, padding=1).is_contiguous()


def test_conv2d_loop_matches_torch():
    for stride, padding, kernel in [(1, 0, 3), (2, 1, 3), (1, "same", 4), (2, "full", 2), ((1, 2), (2, 1), 3)]:
        x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
        w = torch.randn(4, 3, kernel, kernel, dtype=torch.float64)
        b = torch.randn(4, dtype=torch.float64)
        theirs = F.conv2d(x, w, b, stride, torch_padding(padding, (kernel, kernel), (1, 1)))
        assert_same(LF.conv2d_loop(x, w, b, stride, padding), theirs)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40), k=st.integers(1, 7), s=st.integers(1, 4), d=st.integers(1, 3),
    mode=st.sampled_from([0, 1, 2, 3, "valid", "same", "full"]),
)
def test_conv_output_size_matches_torch(n, k, s, d, mode):
    if mode == "same" and s != 1:
        with pytest.raises(ValueError, match="stride"):
            LF.conv_output_size(n, k, s, mode, d)
        return
    before, after = LF.padding_amount(mode, k, d)
    if n + before + after < d * (k - 1) + 1:
        with pytest.raises(ValueError, match="covers"):
            LF.conv_output_size(n, k, s, mode, d)
        return
    if mode == "full":
        padding = (d * (k - 1), 0)
    else:
        padding = mode if isinstance(mode, str) else (mode, 0)
    out = F.conv2d(torch.zeros(1, 1, n, 1), torch.zeros(1, 1, k, 1), None, (s, 1), padding, (d, 1))
    assert LF.conv_output_size(n, k, s, mode, d) == out.shape[2]


@pytest.mark.parametrize("k,d", [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (4, 3)])
def test_padding_amount(k, d):
    assert LF.padding_amount("valid", k, d) == (0, 0)
    assert LF.padding_amount("full", k, d) == (d * (k - 1), d * (k - 1))
    assert LF.padding_amount(2, k, d) == (2, 2)
    # 'same': padding by hand with these amounts gives exactly torch's padding='same'
    before, after = LF.padding_amount("same", k, d)
    assert before + after == d * (k - 1)
    x = torch.randn(1, 2, 9, 8, dtype=torch.float64)
    w = torch.randn(3, 2, k, k, dtype=torch.float64)
    by_hand = F.conv2d(F.pad(x, (before, after, before, after)), w, dilation=d)
    assert_same(by_hand, F.conv2d(x, w, padding="same", dilation=d))
    assert by_hand.shape[-2:] == x.shape[-2:]
    # 'full': every overlap, n + d(k - 1) outputs
    full = LF.conv2d(x, w, padding="full", dilation=d)
    assert full.shape[-2:] == (9 + d * (k - 1), 8 + d * (k - 1))


@st.composite
def pool_configs(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = draw(st.sampled_from([None, 1, 2, 3, (1, 2), (2, 3)]))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    size = [max(1, kernel[a] - 2 * padding[a]) + draw(st.integers(0, 6)) for a in range(2)]
    return dict(batch=draw(st.integers(1, 2)), channels=draw(st.integers(1, 3)), size=size,
                kernel=kernel, stride=stride, padding=padding, ties=draw(st.booleans()))


@SETTINGS
@given(pool_configs(), st.sampled_from(["max", "avg"]))
def test_pool2d_matches_torch(cfg, kind):
    ours_fn, theirs_fn = (LF.max_pool2d, F.max_pool2d) if kind == "max" else (LF.avg_pool2d, F.avg_pool2d)
    shape = (cfg["batch"], cfg["channels"], *cfg["size"])
    if cfg["ties"]:  # few distinct values: the gradient must go to the same maximum as torch's
        x = torch.randint(-1, 2, shape).double().requires_grad_()
    else:
        x = leaf(*shape)
    args = (cfg["kernel"], cfg["stride"], cfg["padding"])
    ours, theirs = ours_fn(x, *args), theirs_fn(x, *args)
    assert_same(ours, theirs)
    grad = torch.randn_like(ours)
    assert_same(grads(ours, [x], grad)[0], grads(theirs, [x], grad)[0])


def test_pools_without_gradient_match_torch():
    """Inference takes a cheaper path (no winners remembered)."""
    x = torch.randn(2, 3, 13, 12, dtype=torch.float64)
    with torch.no_grad():
        for args in [(3, 2), (3, 2, 1), ((2, 3), (1, 2), (1, 1))]:
            assert_same(LF.max_pool2d(x, *args), F.max_pool2d(x, *args))
            assert_same(LF.avg_pool2d(x, *args), F.avg_pool2d(x, *args))


@SETTINGS
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.integers(1, 6), st.integers(1, 5),
       st.booleans())
def test_linear_matches_torch(lead, fan_in, fan_out, bias):
    x, w = leaf(*lead, fan_in), leaf(fan_out, fan_in)
    b = leaf(fan_out) if bias else None
    ours, theirs = LF.linear(x, w, b), F.linear(x, w, b)
    assert_same(ours, theirs)
    grad = torch.randn_like(ours)
    for a, t in zip(grads(ours, [x, w, b], grad), grads(theirs, [x, w, b], grad)):
        assert_same(a, t)


def test_relu_matches_torch_including_zero():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.0, 0.5, 3.0, float("nan")], dtype=torch.float64)
    x = torch.cat([x, torch.randn(50, dtype=torch.float64)]).requires_grad_()
    ours, theirs = LF.relu(x), torch.relu(x)
    torch.testing.assert_close(ours, theirs, equal_nan=True)
    grad = torch.randn_like(ours)
    assert_same(grads(ours, [x], grad)[0], grads(theirs, [x], grad)[0])


@SETTINGS
@given(st.lists(st.integers(1, 3), min_size=0, max_size=2), st.integers(1, 6), st.integers(1, 6),
       st.integers(1, 5), st.integers(1, 5), st.sampled_from(["none", "causal", "bool", "float"]))
def test_attention_matches_torch(lead, length, source, width, value_width, mask_kind):
    q, k, v = leaf(*lead, length, width), leaf(*lead, source, width), leaf(*lead, source, value_width)
    kwargs = {}
    if mask_kind == "causal":
        kwargs["is_causal"] = True
    elif mask_kind == "bool":
        mask = torch.rand(length, source) > 0.3
        mask[:, 0] = True  # every query keeps at least one key
        kwargs["attn_mask"] = mask
    elif mask_kind == "float":
        kwargs["attn_mask"] = torch.randn(length, source, dtype=torch.float64)
    if mask_kind == "causal" and length > source:
        return  # torch's causal mask is aligned top-left, leaving rows empty
    ours = LF.scaled_dot_product_attention(q, k, v, **kwargs)
    theirs = F.scaled_dot_product_attention(q, k, v, **kwargs)
    assert_same(ours, theirs)
    grad = torch.randn_like(ours)
    for a, t in zip(grads(ours, [q, k, v], grad), grads(theirs, [q, k, v], grad)):
        assert_same(a, t)
    # The weights are what attention multiplies the values by: torch's output for V = I.
    eye = torch.eye(source, dtype=torch.float64).expand(*lead, source, source)
    weights = LF.attention_weights(q, k, kwargs.get("attn_mask"), kwargs.get("is_causal", False))
    assert_same(weights, F.scaled_dot_product_attention(q, k, eye, **kwargs))


def test_attention_scale_and_vit_shape():
    q, k, v = (torch.randn(2, 3, 17, 8, dtype=torch.float64) for _ in range(3))
    assert_same(LF.scaled_dot_product_attention(q, k, v, scale=0.3),
                F.scaled_dot_product_attention(q, k, v, scale=0.3))
    weights = LF.attention_weights(q, k)
    assert weights.shape == (2, 3, 17, 17)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 17, dtype=torch.float64))


@pytest.mark.gpu
def test_functional_on_cuda_matches_torch():
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # torch's conv in full float32
        check_on_cuda()


def check_on_cuda():
    device = torch.device("cuda")
    x = torch.randn(4, 16, 20, 20, device=device, requires_grad=True)
    for w, kwargs in [
        (torch.randn(32, 16, 3, 3, device=device), dict(padding=1)),
        (torch.randn(32, 8, 5, 5, device=device), dict(padding=2, groups=2, stride=2)),
        (torch.randn(16, 1, 3, 3, device=device), dict(padding="same", groups=16)),
        (torch.randn(24, 16, 4, 4, device=device), dict(stride=4)),
    ]:
        w.requires_grad_()
        ours, theirs = LF.conv2d(x, w, **kwargs), F.conv2d(x, w, **kwargs)
        assert ours.device == x.device
        torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-3)
        grad = torch.randn_like(ours)
        for a, t in zip(grads(ours, [x, w], grad), grads(theirs, [x, w], grad)):
            torch.testing.assert_close(a, t, rtol=1e-3, atol=1e-3)
    for ours_fn, theirs_fn in [(LF.max_pool2d, F.max_pool2d), (LF.avg_pool2d, F.avg_pool2d)]:
        ours, theirs = ours_fn(x, 3, 2, 1), theirs_fn(x, 3, 2, 1)
        torch.testing.assert_close(ours, theirs)
        grad = torch.randn_like(ours)
        torch.testing.assert_close(grads(ours, [x], grad)[0], grads(theirs, [x], grad)[0])
    q, k, v = (torch.randn(2, 4, 33, 16, device=device) for _ in range(3))
    torch.testing.assert_close(LF.scaled_dot_product_attention(q, k, v),
                               F.scaled_dot_product_attention(q, k, v), rtol=1e-3, atol=1e-3)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = LF.conv2d(x, torch.randn(8, 16, 3, 3, device=device), padding=1)
    assert out.dtype == torch.bfloat16


def test_conv2d_chunks_of_several_images_with_a_shorter_last_chunk():
    """Windows are copied a few images at a time: 5 images in chunks of 2, 2 and 1."""
    x = leaf(5, 4, 9, 7)
    w = leaf(6, 2, 3, 3)
    b = leaf(6)
    per_image = 7 * 5 * 3 * 3 * 2 * 2 * x.element_size()  # (Ho*Wo) * (kh*kw*Cg) * G * bytes
    with mock.patch.object(conv_module, "CHUNK_BYTES", 2 * per_image):
        assert list(conv_module._image_chunks(5, per_image // x.element_size(), x.element_size())) == [
            (0, 2), (2, 2), (4, 1)]
        ours = LF.conv2d(x, w, b, groups=2)
        grad = torch.randn_like(ours)
        ours_grads = grads(ours, [x, w, b], grad)
    theirs = F.conv2d(x, w, b, groups=2)
    assert_same(ours, theirs)
    for a, t in zip(ours_grads, grads(theirs, [x, w, b], grad)):
        assert_same(a, t)
