"""Tests for chapter 2's drawing helpers (labcode.figures.ch2) and the scaling explorer
(labcode.widgets.scaling).

Headless (Agg). What the pictures show is checked against the real models: the towers'
sizes against AlexNet2012's feature maps, the block diagrams against the blocks' own
forward pass, and the closed-form counts against labcode.flops (torch's FLOP counter)
on EfficientNetV2 built on the meta device.
"""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from labcode import flops  # noqa: E402
from labcode.figures import ch2  # noqa: E402
from labcode.layers import FusedMBConv, MBConv  # noqa: E402
from labcode.models.alexnet import PAPER_2012_CONVS, AlexNet2012  # noqa: E402
from labcode.models.efficientnet import VARIANTS, EfficientNetV2, Stage  # noqa: E402
from labcode.widgets import scaling  # noqa: E402


def gids(fig, kind):
    return [p.get_gid() for ax in fig.axes for p in ax.patches if isinstance(p, kind)]


# --- AlexNet's two towers ------------------------------------------------------------


def test_tower_sizes_match_the_2012_model():
    model = AlexNet2012()
    x = torch.zeros(1, 3, 227, 227)
    sizes = []
    with torch.no_grad():
        for layer in model.features:
            x = layer(x)
            if isinstance(layer, torch.nn.Conv2d):
                sizes.append([layer.out_channels, None, layer.groups])
            sizes[-1][1] = x.shape[-1]  # side after the conv's ReLU/LRN/pool
    rows = ch2.alexnet_tower_layers(PAPER_2012_CONVS, 227)
    assert [(r["channels"], r["size"]) for r in rows[:5]] == [(c, s) for c, s, _ in sizes]
    expected = ["input"] + ["own" if g == 2 else "both" for _, _, g in sizes[1:]]
    assert [r["reads"] for r in rows[:5]] == expected
    assert [r["channels"] for r in rows[5:]] == [4096, 4096, 1000]


def test_towers_figure_draws_a_cross_arrow_for_every_layer_that_reads_both_gpus():
    fig = ch2.alexnet_towers_figure()
    rows = ch2.alexnet_tower_layers(PAPER_2012_CONVS)
    arrows = gids(fig, FancyArrowPatch)
    both = sum(1 for r in rows if r["reads"] == "both" and not r.get("single"))
    assert arrows.count("cross") == 2 * both + 2  # + the two arrows into the single fc8
    assert arrows.count("own") == 2 * sum(1 for r in rows if r["reads"] in ("own", "both") and not r.get("single"))
    assert arrows.count("from-input") == 2
    assert gids(fig, FancyBboxPatch).count("layer") == 2 * (len(rows) - 1) + 1
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert "conv2\n128 @ 13x13" in labels  # half of 256 channels per GPU, after pooling


def test_tower_layers_reject_a_bad_size():
    with pytest.raises(ValueError, match="input_size"):
        ch2.alexnet_tower_layers(PAPER_2012_CONVS, 0)


# --- MBConv and Fused-MBConv ---------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(c_in=st.sampled_from([8, 16, 24]), c_out=st.sampled_from([8, 16, 32]),
       expand=st.sampled_from([1, 4, 6]), stride=st.sampled_from([1, 2]),
       se=st.sampled_from([0.0, 0.25]), fused=st.booleans(), size=st.integers(3, 9))
def test_block_parts_follow_the_block(c_in, c_out, expand, stride, se, fused, size):
    if fused and expand == 1 and se > 0:  # one kxk conv: nothing for SE to rescale
        with pytest.raises(ValueError, match="se_ratio"):
            FusedMBConv(c_in, c_out, expand, 3, stride, se_ratio=se)
        return
    block = (FusedMBConv if fused else MBConv)(c_in, c_out, expand, 3, stride, se_ratio=se)
    parts = ch2.block_parts(block, (c_in, size, size))
    x = torch.randn(1, c_in, size, size)
    block.eval()
    with torch.no_grad():
        for part in parts:
            x = getattr(block, part["role"])(x)  # the submodule is named by its role
            assert part["shape"] == tuple(x.shape[1:])
        assert block(torch.randn(1, c_in, size, size)).shape == x.shape
    assert sum(p["params"] for p in parts) == sum(p.numel() for p in block.parameters())
    roles = [p["role"] for p in parts]
    if fused:
        assert roles[0] == "fused" and "depthwise" not in roles
    else:
        assert roles[-2:] in (["se", "project"], ["depthwise", "project"]) and "fused" not in roles
        assert ("expand" in roles) == (expand != 1)
    assert ("se" in roles) == (se > 0 and (not fused or expand != 1))


def test_block_figure_draws_one_box_per_part_and_the_shortcut():
    mb, fu = MBConv(24, 24, 4, se_ratio=0.25), FusedMBConv(24, 24, 4)
    fig = ch2.block_figure(mb, fu, (24, 16, 16))
    left, right = fig.axes
    boxes = lambda ax: [p.get_gid() for p in ax.patches if isinstance(p, FancyBboxPatch)]  # noqa: E731
    assert boxes(left) == ["part-expand", "part-depthwise", "part-se", "part-project"]
    assert boxes(right) == ["part-fused", "part-project"]
    assert all("residual" in [p.get_gid() for p in ax.patches] for ax in (left, right))
    texts = [t.get_text() for t in left.texts]
    assert "expand: conv 1x1, 24 -> 96\nBN, SiLU" in texts
    no_shortcut = ch2.block_figure(MBConv(24, 32, 4, stride=2), FusedMBConv(24, 32, 4, stride=2), (24, 16, 16))
    assert all("residual" not in [p.get_gid() for p in ax.patches] for ax in no_shortcut.axes)


def test_block_parts_reject_other_modules():
    with pytest.raises(TypeError, match="MBConv"):
        ch2.block_parts(torch.nn.Conv2d(3, 3, 3), (3, 8, 8))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        ch2.block_parts(MBConv(8, 8, 4), (8, 8))


# --- curves, bars, top-5 ---------------------------------------------------------------


def test_training_error_figure_plots_every_run_in_percent():
    curves = {"ReLU": [([1, 2, 3], [0.5, 0.3, 0.2]), ([1, 2, 3], [0.6, 0.4, 0.1])],
              "tanh": [([1, 2], [0.9, 0.8])]}
    fig = ch2.training_error_figure(curves, target=0.25)
    lines = [ln for ln in fig.axes[0].lines if ln.get_gid()]
    assert sorted(ln.get_gid() for ln in lines) == ["run-ReLU", "run-ReLU", "run-tanh", "target"]
    relu = [ln for ln in lines if ln.get_gid() == "run-ReLU"][1]
    assert list(relu.get_ydata()) == pytest.approx([60, 40, 10])
    with pytest.raises(ValueError, match="2 x values"):
        ch2.training_error_figure({"x": [([1, 2], [0.1])]})
    with pytest.raises(ValueError, match="empty"):
        ch2.training_error_figure({})


def test_timing_figure_bar_heights_are_the_times():
    times = {"MBConv": [3.0, 2.0], "Fused-MBConv": [1.0, 4.0]}
    fig = ch2.timing_figure(["a", "b"], times, "cpu")
    for name, values in times.items():
        bars = [p for p in fig.axes[0].patches if p.get_gid() == f"bar-{name}"]
        assert [b.get_height() for b in bars] == values
    with pytest.raises(ValueError, match="1 times for 2 labels"):
        ch2.timing_figure(["a", "b"], {"x": [1.0]}, "cpu")


def test_top5_figure_bars():
    fig = ch2.top5_figure(torch.rand(3, 8, 8), ["a", "b"], [0.7, 0.2])
    bars = [p for p in fig.axes[1].patches if p.get_gid() == "prob"]
    assert sorted(b.get_width() for b in bars) == pytest.approx([20, 70])
    with pytest.raises(ValueError, match="2 names for 1"):
        ch2.top5_figure(torch.rand(3, 8, 8), ["a", "b"], [0.7])


# --- closed-form counts and the explorer -------------------------------------------------


def torch_counts(stages, head, side, in_channels=3, classes=1000):
    with torch.device("meta"):
        model = EfficientNetV2(stages, num_classes=classes, head_channels=head, in_channels=in_channels)
    c = flops.count(model, (1, in_channels, side, side))
    return c.params, c.macs


@pytest.mark.parametrize("variant", ["s", "s-arxiv-v1", "small"])
def test_count_network_matches_the_flop_counter(variant):
    v = VARIANTS[variant]
    channels, side, classes = (1, 28, 10) if variant == "small" else (3, 96, 1000)
    ours = scaling.count_network(v.stages, v.head_channels, side, in_channels=channels, num_classes=classes)
    assert (ours.params, ours.macs) == torch_counts(v.stages, v.head_channels, side, channels, classes)


stage = st.builds(  # no SE on a Fused-MBConv that does not expand (the block refuses it)
    lambda block, e, s, c_in, c_out, n, se: Stage(block, e, 3, s, c_in, c_out, n,
                                                  0.0 if block == "FusedMBConv" and e == 1 else se),
    st.sampled_from(["MBConv", "FusedMBConv"]), st.sampled_from([1, 4, 6]), st.sampled_from([1, 2]),
    st.sampled_from([8, 16, 24]), st.sampled_from([8, 16, 40]), st.integers(1, 2), st.sampled_from([0.0, 0.25]))


@settings(max_examples=25, deadline=None)
@given(st.lists(stage, min_size=1, max_size=3), st.integers(9, 40), st.sampled_from([32, 64]))
def test_count_network_matches_the_flop_counter_on_random_networks(stages, side, head):
    fixed = [stages[0]]
    for s in stages[1:]:  # each stage starts where the previous one ended
        fixed.append(Stage(s.block, s.expand_ratio, s.kernel, s.stride, fixed[-1].out_channels,
                           s.out_channels, s.layers, s.se_ratio))
    ours = scaling.count_network(fixed, head, side)
    assert (ours.params, ours.macs) == torch_counts(fixed, head, side)


def test_scaled_network_matches_the_flop_counter_and_scales_the_bars():
    stages, head, side = scaling.scaled_network("s", depth=1.4, width=1.2, resolution=0.3)
    ours = scaling.count_network(stages, head, side)
    assert (ours.params, ours.macs) == torch_counts(stages, head, side)
    fig = scaling.scaling_figure("s", 1.4, 1.2, 0.3)
    scaled = [p.get_height() for p in fig.axes[0].patches if p.get_gid() == "scaled"]
    assert scaled == [s.out_channels for s in stages]
    layers = [p.get_height() for p in fig.axes[1].patches if p.get_gid() == "scaled"]
    assert layers == [s.layers for s in stages]
    assert layers == [-(-s.layers * 14 // 10) for s in VARIANTS["s"].stages]  # ceil(1.4 * n)


def test_scaling_rejects_bad_values():
    with pytest.raises(ValueError, match="variant"):
        scaling.scaled_network("xl")
    with pytest.raises(ValueError, match="depth"):
        scaling.scaled_network("s", depth=0)
    with pytest.raises(ValueError, match="resolution"):
        scaling.count_network(VARIANTS["s"].stages, 1280, 0)


def test_explorer_phi_sets_the_three_multipliers():
    pytest.importorskip("ipywidgets")
    explorer = scaling.ScalingExplorer()
    explorer.sliders["phi"].value = 2.0
    d, w, r = explorer.values()
    assert (d, w, r) == pytest.approx((1.2 ** 2, 1.1 ** 2, 1.15 ** 2), abs=0.03)
    assert "d=1.44" in explorer.figure()._suptitle.get_text()
    with pytest.raises(ValueError, match="depth"):
        scaling.ScalingExplorer(depth=10.0)


def test_count_network_refuses_se_on_a_fused_block_that_does_not_expand():
    row = Stage("FusedMBConv", 1, 3, 1, 24, 24, 2, 0.25)
    with pytest.raises(ValueError, match="se_ratio must be 0"):
        FusedMBConv(24, 24, 1, 3, 1, se_ratio=0.25)
    with pytest.raises(ValueError, match="se_ratio must be 0"):
        scaling.count_network([row], 64, 32)
