"""EfficientNetV2 and its blocks against torchvision's, the stage tables, scaling helpers, checks."""
import math
from functools import partial

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.models import efficientnet as tv_eff
from torchvision.models._utils import _make_divisible
from torchvision.ops import SqueezeExcitation as TVSqueezeExcitation
from torchvision.ops import stochastic_depth as tv_stochastic_depth

from labcode.layers import set_backend
from labcode.layers.mbconv import FusedMBConv, MBConv, SqueezeExcitation, StochasticDepth
from labcode.models.efficientnet import (
    EFFICIENTNET_V2_S,
    EfficientNetV2,
    Stage,
    efficientnet_v2_l,
    efficientnet_v2_m,
    efficientnet_v2_s,
    efficientnet_v2_small,
    scale_depth,
    scale_stages,
    scale_width,
    stage_table,
)

# FACTS.md, measured with torchvision 0.29.1
PARAMS = {"s": 21_458_488, "m": 54_139_356, "l": 118_515_272}
OURS = {"s": efficientnet_v2_s, "m": efficientnet_v2_m, "l": efficientnet_v2_l}
THEIRS = {"s": tv_eff.efficientnet_v2_s, "m": tv_eff.efficientnet_v2_m, "l": tv_eff.efficientnet_v2_l}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Quick random weights and BN statistics, scaled so signals neither vanish nor explode."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if p.ndim > 1:
            p.data.normal_(0.0, 1.0 / math.sqrt(p[0].numel()), generator=gen)
        elif name.endswith("weight"):  # BN scale
            p.data.uniform_(0.5, 1.5, generator=gen)
        else:
            p.data.normal_(0.0, 0.1, generator=gen)
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b.normal_(0.0, 0.1, generator=gen)
        elif name.endswith("running_var"):
            b.uniform_(0.5, 1.5, generator=gen)
        else:
            b.zero_()
    return model


def _on_cpu_without_init(build, num_classes: int) -> nn.Module:
    # Built on 'meta' to skip the slow default init of up to 118M parameters.
    with torch.device("meta"):
        model = build(num_classes=num_classes)
    return model.to_empty(device="cpu")


@pytest.mark.parametrize("num_classes", [1000, 10])
@pytest.mark.parametrize("variant", ["s", "m", "l"])
def test_torchvision_state_dict_loads_strictly(variant, num_classes):
    # Structure only, on the 'meta' device (no memory, no init): same keys, same shapes,
    # same parameter count, same stochastic-depth schedule and dropout.
    with torch.device("meta"):
        ref = THEIRS[variant](num_classes=num_classes)
        model = OURS[variant](num_classes=num_classes)
    model.load_state_dict(ref.state_dict(), strict=True)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert ours == theirs
    if num_classes == 1000:
        assert _n_params(model) == PARAMS[variant]
    assert _n_params(model) == _n_params(ref)
    ours_sd = [m.p for m in model.modules() if isinstance(m, StochasticDepth)]
    theirs_sd = [m.p for m in ref.modules() if isinstance(m, torchvision.ops.StochasticDepth)]
    assert ours_sd == pytest.approx(theirs_sd)
    assert model.classifier[0].p == ref.classifier[0].p  # dropout 0.2 / 0.3 / 0.4


@pytest.mark.parametrize("num_classes", [1000, 10])
@pytest.mark.parametrize("variant", ["s", "m", "l"])
def test_torchvision_weights_give_same_outputs(variant, num_classes):
    # Every variant number for number (M and L cost a few seconds each to build).
    ref = _randomize(_on_cpu_without_init(THEIRS[variant], num_classes)).eval()
    model = _on_cpu_without_init(OURS[variant], num_classes)
    model.load_state_dict(ref.state_dict(), strict=True)
    model.eval()
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        expected = ref(x)
        got = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_real_construction_counts_and_runs():
    torch.manual_seed(0)
    model = efficientnet_v2_s().eval()
    assert _n_params(model) == PARAMS["s"]
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


# -- blocks -------------------------------------------------------------------------------

BN = partial(nn.BatchNorm2d, eps=1e-3)


@settings(max_examples=20, deadline=None)
@given(
    fused=st.booleans(),
    c_in=st.sampled_from([8, 16, 24]),
    c_out=st.sampled_from([8, 16, 32]),
    expand=st.sampled_from([1, 4, 6]),
    kernel=st.sampled_from([3, 5]),
    stride=st.sampled_from([1, 2]),
    size=st.integers(5, 9),
)
def test_blocks_match_torchvision(fused, c_in, c_out, expand, kernel, stride, size):
    if fused:
        cnf = tv_eff.FusedMBConvConfig(expand, kernel, stride, c_in, c_out, 1)
        ref = tv_eff.FusedMBConv(cnf, 0.0, BN)
        block = FusedMBConv(c_in, c_out, expand, kernel, stride, se_ratio=0.0)
    else:
        cnf = tv_eff.MBConvConfig(expand, kernel, stride, c_in, c_out, 1)
        ref = tv_eff.MBConv(cnf, 0.0, BN)
        block = MBConv(c_in, c_out, expand, kernel, stride, se_ratio=0.25)
    _randomize(ref).eval()
    block.load_state_dict(ref.state_dict(), strict=True)
    block.eval()
    x = torch.randn(2, c_in, size, size)
    with torch.no_grad():
        torch.testing.assert_close(block(x), ref(x), rtol=1e-4, atol=1e-5)
    assert block.use_residual == (stride == 1 and c_in == c_out)


def test_mbconv_parts_follow_the_paper():
    block = MBConv(16, 24, expand_ratio=4, kernel_size=3, stride=2)
    expand, depthwise, se, project = (block.part(r) for r in ("expand", "depthwise", "se", "project"))
    assert expand[0].kernel_size == (1, 1) and expand[0].out_channels == 64
    assert depthwise[0].groups == 64 and depthwise[0].stride == (2, 2)  # one filter per channel
    assert se.fc1.out_channels == 16 // 4  # squeeze to a quarter of the block's input
    assert project[0].out_channels == 24 and len(project) == 2  # conv + BN, no activation
    fused = FusedMBConv(16, 16, expand_ratio=1)
    assert len(fused.block) == 1 and fused.part("project") is None  # just kxk conv + BN + SiLU


def test_squeeze_excitation_matches_torchvision():
    ref = TVSqueezeExcitation(32, 8, activation=nn.SiLU)
    se = SqueezeExcitation(32, 8)
    se.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, 32, 5, 5)
    torch.testing.assert_close(se(x), ref(x))


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_matches_torchvision(p, mode):
    x = torch.randn(64, 3, 2, 2)
    layer = StochasticDepth(p, mode)
    torch.manual_seed(1)
    got = layer(x)  # training mode: drop and rescale
    torch.manual_seed(1)
    expected = tv_stochastic_depth(x, p, mode, training=True)
    torch.testing.assert_close(got, expected)
    assert torch.equal(layer.eval()(x), x)  # identity at test time


def test_stochastic_depth_drops_whole_samples_at_rate_p():
    torch.manual_seed(0)
    x = torch.ones(4000, 2, 3, 3)
    out = StochasticDepth(0.25, "row")(x)
    dropped = (out.flatten(1) == 0).all(dim=1)
    kept = ~dropped
    assert abs(dropped.float().mean().item() - 0.25) < 0.03
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.75))  # rescaled survivors
    with pytest.raises(ValueError, match="p must be in"):
        StochasticDepth(1.5)


# -- scratch backend ---------------------------------------------------------------------


def test_scratch_backend_gives_torchs_outputs():
    # the small model holds every kind of layer the big ones have (fused, depthwise, SE, project)
    model = _randomize(efficientnet_v2_small(num_classes=10, in_channels=3)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        set_backend(model, "scratch")
        got = model(x)
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert depthwise and all(m.backend == "scratch" for m in depthwise)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


# -- tables and scaling --------------------------------------------------------------------

# FACTS.md: EfficientNetV2-S (expand ratio, kernel, stride, in, out, layers); MBConv stages with SE
FACTS_S = [
    ("FusedMBConv", 1, 3, 1, 24, 24, 2),
    ("FusedMBConv", 4, 3, 2, 24, 48, 4),
    ("FusedMBConv", 4, 3, 2, 48, 64, 4),
    ("MBConv", 4, 3, 2, 64, 128, 6),
    ("MBConv", 6, 3, 1, 128, 160, 9),
    ("MBConv", 6, 3, 2, 160, 256, 15),
]


def test_stage_table_is_the_facts_s_configuration():
    rows = stage_table("s")
    assert rows[0]["operator"] == "Conv3x3" and rows[0]["stride"] == 2 and rows[0]["channels"] == 24
    assert rows[-1]["channels"] == 1280
    body = rows[1:-1]
    got = [(r["block"], r["expand_ratio"], r["kernel"], r["stride"], r["in_channels"], r["channels"], r["layers"]) for r in body]
    assert got == FACTS_S
    assert [r["se_ratio"] for r in body] == [0, 0, 0, 0.25, 0.25, 0.25]
    assert [r["operator"] for r in body][3] == "MBConv4, k3x3, SE0.25"
    assert [r["stage"] for r in rows] == list(range(8))


def test_stage_table_keeps_the_first_arxiv_numbers():
    rows = stage_table("s-arxiv-v1")
    assert rows[-2]["channels"] == 272 and rows[-1]["channels"] == 1792
    with pytest.raises(ValueError, match="variant"):
        stage_table("xl")


@settings(max_examples=60, deadline=None)
@given(channels=st.integers(1, 2048), mult=st.floats(0.25, 4.0))
def test_width_scaling_rounds_like_efficientnet(channels, mult):
    assert scale_width(channels, mult) == _make_divisible(channels * mult, 8)
    assert scale_width(channels, mult) % 8 == 0


def test_depth_scaling_rounds_up_and_scale_stages():
    assert [scale_depth(n, 1.2) for n in (1, 2, 4, 15)] == [2, 3, 5, 18]
    assert scale_stages(EFFICIENTNET_V2_S) == EFFICIENTNET_V2_S
    wide = scale_stages(EFFICIENTNET_V2_S, width_mult=1.1, depth_mult=1.2)
    assert [s.out_channels for s in wide] == [24, 56, 72, 144, 176, 280]
    assert [s.layers for s in wide] == [3, 5, 5, 8, 11, 18]
    with pytest.raises(ValueError, match="multipliers"):
        scale_stages(EFFICIENTNET_V2_S, width_mult=0)


# -- small model and input checks ----------------------------------------------------------


@pytest.mark.parametrize("in_channels,size", [(1, 28), (3, 32)])
def test_small_model_shapes_and_size(in_channels, size):
    model = efficientnet_v2_small(num_classes=10, in_channels=in_channels)
    assert _n_params(model) < 300_000
    assert any(isinstance(m, MBConv) for m in model.modules()) and any(isinstance(m, FusedMBConv) for m in model.modules())
    out = model(torch.randn(4, in_channels, size, size))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_wrong_input_is_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match=r"expected 1 input channels, got 3"):
        efficientnet_v2_small()(torch.randn(2, 3, 28, 28))
    with torch.device("meta"):
        big = efficientnet_v2_s()
    with pytest.raises(ValueError, match=r"expected 3 input channels, got 4"):
        big(torch.randn(1, 4, 64, 64, device="meta"))
    with pytest.raises(ValueError, match="num_classes"):
        efficientnet_v2_small(num_classes=0)
    with pytest.raises(ValueError, match="Stage.block"):
        EfficientNetV2([Stage("Conv", 1, 3, 1, 8, 8, 1, 0.0)])


@pytest.mark.gpu
@pytest.mark.parametrize("build,shape", [(efficientnet_v2_small, (8, 1, 28, 28)), (efficientnet_v2_s, (2, 3, 96, 96))])
def test_cuda_gives_the_cpu_outputs(build, shape):
    torch.manual_seed(0)
    model = build(num_classes=10).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        expected = model(x)
        got = model.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(got, expected, rtol=1e-2, atol=1e-2 * expected.abs().max().item())
    model.train()  # stochastic depth draws its mask on the input's device
    model(x.cuda()).logsumexp(dim=1).mean().backward()
    assert all(p.grad.is_cuda for p in model.parameters())
