"""The receptive field: the recurrence against hand-worked cases and against the gradient
footprint of real networks; the walk over models; the ViT's mean attention distance."""
from __future__ import annotations

import math

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from labcode import models
from labcode.models.efficientnet import efficientnet_v2_s, efficientnet_v2_small
from labcode.models.vit import vit_small
from labcode.receptive_field import (
    Window, gradient_footprint, input_window, layers_of, mean_attention_distance,
    receptive_field, receptive_field_table,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def footprint_box(mask: torch.Tensor) -> tuple[tuple[int, int], tuple[int, int]]:
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return (int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max()))


def assert_footprint_is_receptive_field(net: nn.Module, channels: int, size: int, batch: int = 8) -> int:
    """The measured footprint of the centre unit is exactly the computed square, every pixel of it."""
    torch.manual_seed(0)
    mask, index = gradient_footprint(net, torch.randn(batch, channels, size, size))
    window = input_window(net, index)
    r = receptive_field(net)
    assert all(0 <= first and last < size for first, last in window), "input too small: border clipping"
    assert footprint_box(mask) == window
    assert int(mask.sum()) == r * r
    return r


# -- the recurrence, by hand -----------------------------------------------------------------


@pytest.mark.parametrize("layers, expected", [
    ([], 1),
    ([(3, 1)], 3),
    ([(3, 1)] * 3, 7),                      # three 3x3 convs see as far as one 7x7
    ([(2, 2)] * 3, 8),                      # 2x2 pooling three times: 8x8 blocks
    ([(3, 2), (3, 2)], 7),                  # 3 + (3 - 1) * 2
    ([(3, 2), (3, 2), (3, 1)], 15),         # the third kernel steps 4 input pixels at a time
    ([(3, 1, 0, 2)], 5),                    # dilation 2: span 2 * (3 - 1) + 1
    ([(3, 1), (3, 1, 2, 2)], 7),            # 3 + (5 - 1) * 1
    ([(11, 4, 2), (3, 2), (5, 1, 2)], 51),  # AlexNet's start: 11, then 11 + 2 * 4, then 19 + 4 * 8
])
def test_recurrence_by_hand(layers, expected):
    assert receptive_field(layers) == expected


def test_table_jump_and_offset():
    rows = receptive_field_table([Window(3, 1, 1, name="conv"), Window(2, 2, name="pool"),
                                  Window(3, 1, 1, name="conv2")])
    assert [(r.name, r.jump, r.size, r.offset) for r in rows] == [
        ("conv", 1, 3, 1), ("pool", 2, 4, 1), ("conv2", 2, 8, 3)]
    assert input_window([Window(3, 1, 1), Window(2, 2), Window(3, 1, 1)], (2, 0)) == ((1, 8), (-3, 4))


def test_wrong_recurrences_disagree():
    # two plausible mistakes: the product of strides *including* layer l, and the sum of kernels
    layers = [(3, 2), (3, 2), (3, 1)]
    with_own_stride, jump = 1, 1
    for k, s in layers:
        with_own_stride += (k - 1) * jump * s
        jump *= s
    assert receptive_field(layers) != with_own_stride
    assert receptive_field(layers) != sum(k for k, _ in layers)


# -- the recurrence against the gradient footprint ---------------------------------------------


# Max pooling passes gradient to one pixel per window, so only many images would find the
# edges of its footprint; it is tested on the real networks below, where convolutions spread it.
layer_spec = st.tuples(st.sampled_from(["conv", "avg"]), st.integers(1, 4), st.integers(1, 3),
                       st.integers(0, 2), st.integers(1, 2))


@settings(max_examples=25, deadline=None)
@given(st.lists(layer_spec, min_size=1, max_size=4))
def test_random_chains_match_their_footprint(spec):
    layers: list[nn.Module] = []
    for kind, k, s, p, d in spec:
        s = min(s, k)                                       # a stride past the kernel leaves holes
        if kind == "conv":
            layers += [nn.Conv2d(2, 2, k, s, p, dilation=d), nn.ReLU()]
        else:
            layers.append(nn.AvgPool2d(k, s, min(p, k // 2)))
    net = nn.Sequential(nn.Conv2d(1, 2, 1), *layers)
    rows = receptive_field_table(net)
    r, jump, offset = rows[-1].size, rows[-1].jump, rows[-1].offset
    # an input so large that the unit chosen below sits well inside it
    size = 2 * (r + offset) + 3 * jump + 8
    with torch.no_grad():
        h = net(torch.zeros(1, 1, size, size)).shape[-1]
    index = ((offset + jump - 1) // jump + 1,) * 2           # first unit whose window starts inside
    assert index[0] < h
    for conv in net.modules():
        if isinstance(conv, nn.Conv2d):
            nn.init.uniform_(conv.weight, 0.1, 1.0)          # positive weights, no bias: nothing
            nn.init.zeros_(conv.bias)                        # cancels, no ReLU is ever off
    torch.manual_seed(0)
    mask, _ = gradient_footprint(net, torch.rand(2, 1, size, size) + 0.1, index)
    (top, bottom), (left, right) = window = input_window(net, index)
    assert footprint_box(mask) == window
    if all(d == 1 for *_, d in spec):                        # a dilated kernel may leave holes
        assert int(mask.sum()) == (bottom - top + 1) * (right - left + 1)


def test_small_cnn_footprint():
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 8, 3, dilation=2), nn.ReLU())
    assert assert_footprint_is_receptive_field(net, 1, 64) == 26  # 3, 4, 8, 10, 10 + 4 * 4


def test_alexnet_small_footprint():
    features = models.alexnet_small().features
    assert assert_footprint_is_receptive_field(features, 1, 96) == 42


def test_efficientnet_v2_small_footprint_without_se():
    features = efficientnet_v2_small().features
    for block in features.modules():
        if hasattr(block, "se"):
            block.se = nn.Identity()                        # the local path only
    assert assert_footprint_is_receptive_field(features, 1, 160) == 51


def test_squeeze_excitation_reaches_every_pixel():
    # the assumption made explicit: SE's global gate is not counted, though it reads everything
    torch.manual_seed(0)
    features = efficientnet_v2_small().features
    mask, index = gradient_footprint(features, torch.randn(4, 1, 160, 160))
    assert bool(mask.all())
    assert receptive_field(features) == 51


# -- whole models --------------------------------------------------------------------------


def test_alexnet_receptive_field_matches_torchvision():
    ours, theirs = models.alexnet(), torchvision.models.alexnet()
    assert receptive_field(ours) == receptive_field(theirs) == receptive_field(ours.features) == 195
    # the walk stops at the adaptive pool: the classifier is not a window
    assert [w.name for w in layers_of(ours)][-1] == "features.12"


def test_efficientnet_v2_s_receptive_field_matches_torchvision():
    ours, theirs = efficientnet_v2_s(), torchvision.models.efficientnet_v2_s()
    assert receptive_field(ours) == receptive_field(theirs) == 1487
    # 1 stem + 40 blocks with one kxk conv each (the depthwise or fused one); 1x1 convs add nothing
    spatial = [w for w in layers_of(ours) if w.kernel > 1]
    assert len(spatial) == 1 + 40
    assert len(layers_of(theirs)) == len(layers_of(ours))


def test_string_padding():
    net = nn.Sequential(nn.Conv2d(1, 1, 5, padding="same"), nn.Conv2d(1, 1, 3, padding="valid"))
    assert [w.padding for w in layers_of(net)] == [2, 0]


# -- errors ------------------------------------------------------------------------------


class Shift(nn.Module):
    def forward(self, x):
        return torch.roll(x, 1, dims=-1)


@pytest.mark.parametrize("layers, error, words", [
    ("3x3", TypeError, "expected an nn.Module or a list"),
    (5, TypeError, "expected an nn.Module or a list"),
    ([(3,)], TypeError, "layer 0 must be"),
    ([(3, 1), "pool"], TypeError, "layer 1 must be"),
    ([(0, 1)], ValueError, "kernel must be an int >= 1, got 0"),
    ([(3, 0)], ValueError, "stride must be an int >= 1, got 0"),
    ([(3, 1, -1)], ValueError, "padding must be an int >= 0, got -1"),
    ([(3.0, 1)], ValueError, "kernel must be an int >= 1, got 3.0"),
    (nn.Conv2d(1, 1, (3, 5)), ValueError, "non-square kernel (3, 5)"),
    (nn.Sequential(nn.Conv2d(1, 1, 3), Shift()), TypeError, "do not know how 1 (Shift)"),
])
def test_bad_layers(layers, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        receptive_field(layers)


def test_bad_arguments():
    with pytest.raises(TypeError, match="expected a torch.nn.Module, got list"):
        layers_of([nn.Conv2d(1, 1, 3)])
    with pytest.raises(ValueError, match=r"index must be a pair of ints >= 0 \(row, column\), got \(1,\)"):
        input_window([(3, 1)], (1,))
    net = nn.Conv2d(1, 1, 3)
    with pytest.raises(ValueError, match=r"floating \(B, C, H, W\) tensor, got \(1, 8, 8\)"):
        gradient_footprint(net, torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match=r"index \(9, 0\) is outside the 6x6 output"):
        gradient_footprint(net, torch.zeros(1, 1, 8, 8), (9, 0))
    with pytest.raises(TypeError, match="input_gradient: model must be a torch.nn.Module"):
        gradient_footprint("net", torch.zeros(1, 1, 8, 8))


def test_footprint_leaves_the_training_flag_alone():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).train()
    gradient_footprint(net, torch.randn(2, 1, 9, 9))
    assert net.training


# -- mean attention distance -----------------------------------------------------------------


def attention(weights: torch.Tensor) -> torch.Tensor:
    """(N, N) weights over patches -> (1, 1, N+1, N+1) with a class token that gets nothing."""
    n = weights.shape[0]
    a = torch.zeros(1, 1, n + 1, n + 1)
    a[0, 0, 1:, 1:] = weights
    a[0, 0, 0, 0] = 1.0
    return a


def test_mean_attention_distance_by_hand():
    g, p = 3, 4
    n = g * g
    on_itself = attention(torch.eye(n))
    assert mean_attention_distance([on_itself], p).tolist() == [[0.0]]
    # every query looks at its right-hand neighbour (or left, in the last column): one patch away
    neighbour = torch.zeros(n, n)
    for q in range(n):
        neighbour[q, q + 1 if q % g < g - 1 else q - 1] = 1.0
    assert torch.allclose(mean_attention_distance([attention(neighbour)], p), torch.tensor([[4.0]]))
    # uniform attention: the mean distance between two cells of the grid, times the patch size
    centres = [(i, j) for i in range(g) for j in range(g)]
    expected = p * sum(math.dist(a, b) for a in centres for b in centres) / n**2
    uniform = attention(torch.full((n, n), 1.0 / n))
    got = mean_attention_distance([on_itself, uniform], p)
    assert got.shape == (2, 1)
    assert got[1, 0].item() == pytest.approx(expected, rel=1e-6)


def test_class_token_is_left_out_and_rows_rescaled():
    n = 4
    a = attention(torch.eye(n) * 0.5)
    a[0, 0, 1:, 0] = 0.5                                    # half of each query's weight on the class token
    assert mean_attention_distance([a], 7).tolist() == [[0.0]]


def test_mean_attention_distance_of_a_vit():
    torch.manual_seed(0)
    model = vit_small(patch_size=4).eval()                  # 7 x 7 patches of a 28 x 28 digit
    maps = model.attention_maps(torch.randn(3, 1, 28, 28))
    d = mean_attention_distance(maps, 4)
    assert d.shape == (4, 4)                                # 4 blocks, 4 heads
    farthest = 4 * math.dist((0, 0), (6, 6))
    assert bool(((d > 0) & (d < farthest)).all())


@pytest.mark.parametrize("maps, patch, words", [
    ([torch.zeros(1, 1, 5, 5)], 0, "patch_size must be an int >= 1, got 0"),
    (torch.zeros(1, 1, 5, 5), 4, "non-empty list"),
    ([], 4, "non-empty list"),
    ([torch.zeros(1, 5, 5)], 4, r"block 0 must be \(B, h, N\+1, N\+1\), got \(1, 5, 5\)"),
    ([torch.zeros(1, 1, 6, 6)], 4, "block 0 has 5 patch tokens, not a square grid"),
])
def test_mean_attention_distance_errors(maps, patch, words):
    with pytest.raises(ValueError, match=words):
        mean_attention_distance(maps, patch)


# -- the figures -------------------------------------------------------------------------------


def test_receptive_field_figure_draws_each_layer_and_the_window():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from labcode.figures import ch1

    grad = torch.zeros(40, 30)
    grad[10:20, 5:15] = 1.0
    fig = ch1.receptive_field_figure(torch.rand(3, 40, 30), [("pool1", 4), ("pool2", 10)], grad,
                                     ((10, 19), (5, 14)))
    squares = [p for ax in fig.axes for p in ax.patches if p.get_gid() == "rf-square"]
    window = [p for ax in fig.axes for p in ax.patches if p.get_gid() == "rf-window"]
    assert sorted(p.get_width() for p in squares) == [4, 10]
    assert len(window) == 1 and window[0].get_xy() == (4.5, 9.5) and window[0].get_width() == 10
    plt.close(fig)
    with pytest.raises(ValueError, match=r"same size, got \(3, 40, 30\) and \(40, 31\)"):
        ch1.receptive_field_figure(torch.rand(3, 40, 30), [("a", 3)], torch.zeros(40, 31), ((0, 2), (0, 2)))


def test_attention_distance_figure_one_dot_per_head():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from labcode.figures import ch3

    fig = ch3.attention_distance_figure(torch.rand(4, 3) * 20, 28, "t", {"CNN": [3, 8, 18]})
    ax = fig.axes[0]
    heads = [line for line in ax.lines if line.get_gid() == "head"]
    assert len(heads) == 3 and all(len(line.get_xdata()) == 4 for line in heads)
    rf = [line for line in ax.lines if line.get_gid() == "rf"]
    assert rf[0].get_ydata().tolist() == [1.5, 4.0, 9.0]
    plt.close(fig)
    with pytest.raises(ValueError, match=r"must be an \(L, h\) tensor, got \(4,\)"):
        ch3.attention_distance_figure(torch.rand(4), 28, "t")
