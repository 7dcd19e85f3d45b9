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
from labcode.layers.mbconv import FusedMBConv, MBConv, SqueezeExcitation, StochasticDepth, torchvision_state_dict
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
from paper_tables import (  # tests/paper_tables.py
    EFFICIENTNET_V2_HEAD_CHANNELS,
    EFFICIENTNET_V2_PARAMS,
    EFFICIENTNET_V2_S_ARXIV_V1,
    EFFICIENTNET_V2_S_SE_RATIOS,
    EFFICIENTNET_V2_S_STAGES,
    EFFICIENTNET_V2_S_STEM,
)

PARAMS = EFFICIENTNET_V2_PARAMS
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
    ours = {k: tuple(v.shape) for k, v in torchvision_state_dict(model).items()}
    theirs = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert ours == theirs
    assert list(torchvision_state_dict(model)) == list(ref.state_dict())  # same order too
    ref.load_state_dict(torchvision_state_dict(model), strict=True)  # and back into torchvision
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
    expand, depthwise, se, project = block.expand, block.depthwise, block.se, block.project
    assert list(block.parts()) == ["expand", "depthwise", "se", "project"]
    assert expand[0].kernel_size == (1, 1) and expand[0].out_channels == 64
    assert depthwise[0].groups == 64 and depthwise[0].stride == (2, 2)  # one filter per channel
    assert se.fc1.out_channels == 16 // 4  # squeeze to a quarter of the block's input
    assert project[0].out_channels == 24 and len(project) == 2  # conv + BN, no activation
    fused = FusedMBConv(16, 16, expand_ratio=1)
    assert list(fused.parts()) == ["fused"] and "project" not in fused.parts()  # just kxk conv + BN + SiLU
    assert isinstance(fused.se, nn.Identity) and isinstance(fused.project, nn.Identity)
    assert [n for n, _ in fused.named_children() if n != "stochastic_depth"] == ["fused", "se", "project"]
    assert list(FusedMBConv(16, 24, expand_ratio=4, se_ratio=0.25).parts()) == ["fused", "se", "project"]
    assert list(MBConv(16, 24, expand_ratio=1, se_ratio=0.0).parts()) == ["depthwise", "project"]


def test_fused_mbconv_refuses_squeeze_excitation_it_would_not_use():
    # expand ratio 1: one kxk conv straight to C_out, no expanded layer for SE to rescale
    with pytest.raises(ValueError, match=r"se_ratio must be 0 .*expand_ratio=1.*got se_ratio=0.25"):
        FusedMBConv(16, 16, expand_ratio=1, se_ratio=0.25)
    with pytest.raises(ValueError, match="se_ratio"):
        EfficientNetV2([Stage("FusedMBConv", 1, 3, 1, 16, 16, 1, 0.25)])
    assert isinstance(FusedMBConv(16, 16, expand_ratio=4, se_ratio=0.25).se, SqueezeExcitation)


def test_named_parts_map_to_torchvisions_keys_both_ways():
    block = MBConv(16, 16, expand_ratio=1)  # no expansion: torchvision's block.0 is the depthwise conv
    assert block.torchvision_names() == {"depthwise": "block.0", "se": "block.1", "project": "block.2"}
    keys = list(torchvision_state_dict(block))
    assert "block.0.0.weight" in keys and "block.1.fc1.weight" in keys and not any("depthwise" in k for k in keys)
    assert list(block.state_dict())[0].startswith("depthwise.")  # our own keys are the named ones
    # our own state dict and torchvision's both load strictly, into a fresh block
    for state in (block.state_dict(), torchvision_state_dict(block)):
        fresh = MBConv(16, 16, expand_ratio=1)
        fresh.load_state_dict(state, strict=True)
        assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), block.state_dict().values()))
    # the mapping leaves the caller's dict alone and does not hide a missing or an extra key
    state = torchvision_state_dict(block)
    before = list(state)
    MBConv(16, 16, expand_ratio=1).load_state_dict(state, strict=True)
    assert list(state) == before
    missing = {k: v for k, v in state.items() if not k.startswith("block.2.")}
    with pytest.raises(RuntimeError, match=r"Missing key.*project\.0\.weight"):
        MBConv(16, 16, expand_ratio=1).load_state_dict(missing, strict=True)
    with pytest.raises(RuntimeError, match=r"Unexpected key.*block\.3\.0\.weight"):
        MBConv(16, 16, expand_ratio=1).load_state_dict({**state, "block.3.0.weight": torch.zeros(1)}, strict=True)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        torchvision_state_dict(block.state_dict())


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


def test_stage_table_is_the_facts_s_configuration():
    rows = stage_table("s")
    stem = EFFICIENTNET_V2_S_STEM
    assert rows[0]["operator"] == stem["operator"] and rows[0]["stride"] == stem["stride"]
    assert rows[0]["channels"] == stem["channels"]
    assert rows[-1]["channels"] == EFFICIENTNET_V2_HEAD_CHANNELS
    body = rows[1:-1]
    got = [(r["block"], r["expand_ratio"], r["kernel"], r["stride"], r["in_channels"], r["channels"], r["layers"]) for r in body]
    assert got == EFFICIENTNET_V2_S_STAGES
    assert [r["se_ratio"] for r in body] == EFFICIENTNET_V2_S_SE_RATIOS
    assert [r["operator"] for r in body][3] == "MBConv4, k3x3, SE0.25"
    assert [r["stage"] for r in rows] == list(range(8))


def test_stage_table_keeps_the_first_arxiv_numbers():
    rows = stage_table("s-arxiv-v1")
    assert (rows[-2]["channels"], rows[-1]["channels"]) == EFFICIENTNET_V2_S_ARXIV_V1
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
