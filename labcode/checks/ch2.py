"""The exercises of chapter 2 (AlexNet and EfficientNetV2): shapes, parameter counts, top-k error, SE, scaling.

One `declare(...)` per exercise of chapters/ch2_alexnet_efficientnet/exercises_solutions.ipynb;
each returns the check the notebook calls, `check.X(fn)`.

AlexNet: Krizhevsky, Sutskever & Hinton, NeurIPS 2012, and torchvision's single-tower
variant (Krizhevsky 2014, arXiv 1404.5997). Squeeze-and-excitation: Hu et al., CVPR 2018
(arXiv 1709.01507). MBConv and compound scaling: Tan & Le, EfficientNet (ICML 2019,
arXiv 1905.11946) and EfficientNetV2 (ICML 2021, arXiv 2104.00298).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from labcode.checks import answers
from labcode.checks.core import Case, Mistake, declare, seeded

# ---------------------------------------------------------------------------------------
# alexnet_output_shapes


def _alexnet_cases() -> list[Case]:
    _, rng = seeded("alexnet_output_shapes")
    sizes: list = [63, 64, 100, 224, 227]
    while len(sizes) < 40:
        sizes.append(rng.randint(63, 320) if rng.random() < 0.7 else (rng.randint(63, 320), rng.randint(63, 320)))
    sizes = sizes[:5] + sorted(sizes[5:], key=lambda s: s if isinstance(s, int) else max(s))
    return [Case((s,)) for s in sizes]


def _alexnet_with(rows):
    def shapes(input_size):
        height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
        return answers.layer_shapes(rows, (3, height, width))
    return shapes


_PAPER_CHANNELS = [(r[0], {64: 96, 192: 256, 384: 384, 256: 256}[r[1]], *r[2:]) if r[0] == "conv" else r
                   for r in answers.ALEXNET_FEATURES]
_PAPER_CHANNELS[8] = ("conv", 384, 3, 1, 1)

alexnet_output_shapes = declare(
    "alexnet_output_shapes",
    signature="alexnet_output_shapes(input_size) -> list of (C, H, W)",
    doc="""Check fn(input_size) -> list of 13 (C, H, W) tuples, one after each layer of torchvision's AlexNet `features`.

    input_size is an int (square image) or (H, W); the image has 3 channels. The layers are
    conv 11x11/4 pad 2, ReLU, maxpool 3/2, conv 5x5 pad 2, ReLU, maxpool 3/2, conv 3x3 pad 1,
    ReLU, conv 3x3 pad 1, ReLU, conv 3x3 pad 1, ReLU, maxpool 3/2 with 64, 192, 384, 256, 256 channels.
    """,
    reference=answers.alexnet_output_shapes,
    make_cases=_alexnet_cases,
    kind="shapes",
    mistakes=[
        Mistake(_alexnet_with([("maxpool", 3, 1) if r[0] == "maxpool" else r for r in answers.ALEXNET_FEATURES]),
                "AlexNet's max pools overlap: 3x3 windows with stride 2"),
        Mistake(_alexnet_with([("maxpool", 2, 2) if r[0] == "maxpool" else r for r in answers.ALEXNET_FEATURES]),
                "AlexNet's max pools are 3x3 with stride 2 (overlapping), not 2x2"),
        Mistake(_alexnet_with([(*r[:4], 0) if r[0] == "conv" else r for r in answers.ALEXNET_FEATURES]),
                "the convolutions are padded: 2 pixels for conv1 and conv2, 1 for conv3 to conv5"),
        Mistake(_alexnet_with(_PAPER_CHANNELS),
                "torchvision's AlexNet has 64, 192, 384, 256, 256 channels (the single-tower variant), "
                "not the 2012 paper's 96, 256, 384, 384, 256"),
    ],
)


# ---------------------------------------------------------------------------------------
# grouped_conv_params


def _grouped_cases() -> list[Case]:
    _, rng = seeded("grouped_conv_params")
    configs = [(4, 4, 3, 1, True), (4, 4, 3, 2, False), (6, 6, 1, 3, True), (96, 256, 5, 2, True)]
    while len(configs) < 100:
        groups = rng.choice([1, 2, 3, 4, 8])
        c_in, c_out = groups * rng.randint(1, 32), groups * rng.randint(1, 32)
        configs.append((c_in, c_out, rng.choice([1, 3, 5, 7]), groups, rng.random() < 0.5))
    configs = configs[:4] + sorted(configs[4:], key=lambda c: c[0] * c[1] * c[2] * c[2])
    return [Case(c) for c in configs]


grouped_conv_params = declare(
    "grouped_conv_params",
    signature="grouped_conv_params(c_in, c_out, k, groups, bias) -> int",
    doc="""Check fn(c_in, c_out, k, groups, bias) -> int, the parameters of nn.Conv2d(c_in, c_out, k, groups=groups, bias=bias).""",
    reference=answers.grouped_conv_params,
    make_cases=_grouped_cases,
    kind="int",
    mistakes=[
        Mistake(lambda c_in, c_out, k, groups, bias: c_in * c_out * k * k + (c_out if bias else 0),
                "each group's filters see only c_in / groups input channels: weights = c_out * (c_in / groups) * k * k"),
        Mistake(lambda c_in, c_out, k, groups, bias: (c_in // groups) * (c_out // groups) * k * k + (c_out if bias else 0),
                "divide by the groups once: there are c_out filters in all, each spanning c_in / groups channels"),
        Mistake(lambda c_in, c_out, k, groups, bias: answers.grouped_conv_params(c_in, c_out, k, groups, not bias),
                "bias=True adds c_out parameters, one per output channel; bias=False adds none"),
        Mistake(lambda c_in, c_out, k, groups, bias: answers.grouped_conv_params(c_in, c_out, k, groups, bias) - (c_out if bias else 0) + (c_out // groups if bias else 0),
                "there is one bias per output channel, c_out of them, whatever the groups"),
    ],
)


# ---------------------------------------------------------------------------------------
# topk_error


def _topk_cases() -> list[Case]:
    gen, rng = seeded("topk_error")
    cases = []
    for n, classes, k in [(1, 2, 1), (4, 3, 1), (4, 5, 2), (8, 10, 5)]:
        cases.append((n, classes, k))
    while len(cases) < 60:
        classes = rng.randint(2, 50)
        cases.append((rng.randint(1, 64), classes, rng.randint(1, min(classes, 10))))
    cases = cases[:4] + sorted(cases[4:], key=lambda c: c[0] * c[1])
    out = []
    for n, classes, k in cases:
        logits = torch.randn(n, classes, generator=gen)
        labels = torch.randint(0, classes, (n,), generator=gen)
        out.append(Case((logits, labels, k)))
    return out


topk_error = declare(
    "topk_error",
    signature="topk_error(logits, labels, k) -> float",
    doc="""Check fn(logits (N, classes), labels (N,), k) -> float: the fraction of samples whose label is not in the top k.

    A Python float between 0 and 1 (a one-element tensor is accepted too).
    """,
    reference=answers.topk_error,
    make_cases=_topk_cases,
    kind="number",
    mistakes=[
        Mistake(lambda logits, labels, k: 1.0 - answers.topk_error(logits, labels, k),
                "that is the top-k accuracy; the error is 1 - accuracy"),
        Mistake(lambda logits, labels, k: 100.0 * answers.topk_error(logits, labels, k),
                "return a fraction between 0 and 1, not a percentage"),
        Mistake(lambda logits, labels, k: answers.topk_error(logits, labels, 1),
                "k is ignored: a sample counts as right when its label is among the k highest scores"),
        Mistake(lambda logits, labels, k: answers.topk_error(-logits, labels, k),
                "take the k largest logits (topk's default), not the smallest"),
    ],
)


# ---------------------------------------------------------------------------------------
# squeeze_excitation


def _se_cases() -> list[Case]:
    gen, rng = seeded("squeeze_excitation")
    configs = [(1, 4, 1, 1, 1), (1, 4, 3, 3, 2), (2, 8, 4, 5, 2)]
    while len(configs) < 50:
        channels = rng.randint(2, 24)
        configs.append((rng.randint(1, 4), channels, rng.randint(1, 8), rng.randint(1, 8), max(1, channels // 4)))
    configs = configs[:3] + sorted(configs[3:], key=lambda c: c[0] * c[1] * c[2] * c[3])
    cases = []
    for n, c, h, w, r in configs:
        cases.append(Case((torch.randn(n, c, h, w, generator=gen), torch.randn(r, c, generator=gen),
                           torch.randn(r, generator=gen), torch.randn(c, r, generator=gen),
                           torch.randn(c, generator=gen))))
    return cases


def _se_with(pool=lambda x: x.mean(dim=(2, 3)), act=F.silu, gate=torch.sigmoid):
    def se(x, w1, b1, w2, b2):
        return x * gate(F.linear(act(F.linear(pool(x), w1, b1)), w2, b2))[:, :, None, None]
    return se


def _se_gate_only(x, w1, b1, w2, b2):
    gate = torch.sigmoid(F.linear(F.silu(F.linear(x.mean(dim=(2, 3)), w1, b1)), w2, b2))  # (N, C)
    return gate[:, :, None, None].expand_as(x).clone()


squeeze_excitation = declare(
    "squeeze_excitation",
    signature="squeeze_excitation(x, w1, b1, w2, b2) -> tensor",
    doc="""Check fn(x, w1, b1, w2, b2) -> tensor, EfficientNet's squeeze-and-excitation.

    x (N, C, H, W); w1 (Cr, C), b1 (Cr,); w2 (C, Cr), b2 (C,). Average x over H and W,
    apply w1, b1 and SiLU, then w2, b2 and a sigmoid, and scale each channel of x by the
    result. x must not change: return a new tensor.
    """,
    reference=answers.squeeze_excitation,
    make_cases=_se_cases,
    kind="tensor",
    mistakes=[
        Mistake(_se_with(act=F.relu), "EfficientNet's squeeze-and-excitation uses SiLU between the two layers, not ReLU"),
        Mistake(_se_with(gate=lambda z: z), "the gate needs a sigmoid, so each channel is scaled by a number between 0 and 1"),
        Mistake(_se_with(pool=lambda x: x.sum(dim=(2, 3))), "squeeze with the mean over H and W, not the sum"),
        Mistake(_se_with(pool=lambda x: x.amax(dim=(2, 3))), "squeeze with the mean over H and W (global average pooling), not the max"),
        Mistake(_se_gate_only, "return x scaled by the gate, not the gate alone"),
    ],
)


# ---------------------------------------------------------------------------------------
# mbconv_params


def _mbconv_cases() -> list[Case]:
    _, rng = seeded("mbconv_params")
    # 6 * 0.25 = 1.5 and 10 * 0.25 = 2.5 tell int() from round(); 2 * 0.25 = 0.5 needs the max(1, ...) floor.
    configs = [(16, 16, 1, 3, 0.25), (16, 24, 4, 3, 0.25), (24, 40, 6, 5, 0.0), (32, 16, 1, 3, 0.0),
               (6, 16, 4, 3, 0.25), (2, 8, 6, 3, 0.25), (10, 16, 6, 5, 0.25), (3, 8, 1, 3, 0.25)]
    while len(configs) < 60:
        configs.append((rng.choice([8, 16, 24, 32, 40, 48, 64, 80, 112, 160]), rng.choice([16, 24, 40, 80, 112, 192]),
                        rng.choice([1, 4, 6]), rng.choice([3, 5]), rng.choice([0.25, 0.25, 0.0])))
    configs = configs[:8] + sorted(configs[8:], key=lambda c: c[0] * c[2] + c[1])
    return [Case(c) for c in configs]


def _mbconv_counts(c_in, c_out, expand, k, se_ratio, bn=True, se_from_hidden=False, always_expand=False, bias=False,
                   squeeze_of=lambda v: max(1, int(v))):
    hidden = c_in * expand
    norm = 2 if bn else 0
    total = 0
    if expand != 1 or always_expand:
        total += c_in * hidden + norm * hidden + (hidden if bias else 0)
    total += hidden * k * k + norm * hidden + (hidden if bias else 0)
    if se_ratio:
        squeeze = squeeze_of((hidden if se_from_hidden else c_in) * se_ratio)
        total += hidden * squeeze + squeeze + squeeze * hidden + hidden
    return total + hidden * c_out + norm * c_out + (c_out if bias else 0)


mbconv_params = declare(
    "mbconv_params",
    signature="mbconv_params(c_in, c_out, expand, k, se_ratio) -> int",
    doc="""Check fn(c_in, c_out, expand, k, se_ratio) -> int, the parameters of one MBConv block as torchvision builds it.

    hidden = c_in * expand. Layers: 1x1 conv c_in -> hidden + BatchNorm (only when expand != 1);
    depthwise k x k conv + BatchNorm; squeeze-and-excitation with two 1x1 convs with bias,
    hidden -> max(1, int(c_in * se_ratio)) -> hidden (none when se_ratio == 0); 1x1 conv
    hidden -> c_out + BatchNorm. Convolutions before a BatchNorm have no bias.
    """,
    reference=answers.mbconv_params,
    make_cases=_mbconv_cases,
    kind="int",
    mistakes=[
        Mistake(lambda *a: _mbconv_counts(*a, bn=False),
                "each BatchNorm has 2 trainable parameters per channel (scale and shift); running statistics are buffers, not parameters"),
        Mistake(lambda *a: _mbconv_counts(*a, se_from_hidden=True),
                "the squeeze width comes from the block's input channels: max(1, int(c_in * se_ratio)), not the expanded width"),
        Mistake(lambda *a: _mbconv_counts(*a, always_expand=True),
                "with expand == 1 there is no 1x1 expansion convolution"),
        Mistake(lambda *a: _mbconv_counts(*a, bias=True),
                "the convolutions followed by BatchNorm have no bias (BatchNorm's shift plays that role); only SE's 1x1 convs do"),
        Mistake(lambda c_in, c_out, expand, k, se_ratio: _mbconv_counts(c_in, c_out, expand, k, se_ratio)
                + (c_in * expand) * (c_in * expand - 1) * k * k,
                "the depthwise convolution has one k x k filter per channel (groups = channels): hidden * k * k weights"),
        Mistake(lambda *a: _mbconv_counts(*a, squeeze_of=lambda v: max(1, round(v))),
                "the squeeze width rounds down: max(1, int(c_in * se_ratio)), not round()"),
        Mistake(lambda *a: _mbconv_counts(*a, squeeze_of=lambda v: int(v)),
                "the squeeze width is at least 1: max(1, int(c_in * se_ratio))"),
    ],
)


# ---------------------------------------------------------------------------------------
# compound_scaling


def _scaling_cases() -> list[Case]:
    _, rng = seeded("compound_scaling")
    configs = [(32, 1, 1.0, 1.0), (16, 2, 1.1, 1.2), (24, 4, 1.4, 1.8), (40, 3, 0.5, 1.0), (10, 2, 1.0, 1.0)]
    while len(configs) < 120:
        configs.append((rng.choice([8, 10, 16, 24, 32, 40, 48, 64, 80, 112, 128, 160, 192, 256, 320]),
                        rng.randint(1, 15), rng.choice([0.25, 0.5, 0.75, 1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2, 3.1]),
                        rng.choice([1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.2, 2.6, 3.1, 3.6])))
    configs = configs[:5] + sorted(configs[5:], key=lambda c: c[0] * c[1])
    return [Case(c) for c in configs]


compound_scaling = declare(
    "compound_scaling",
    signature="compound_scaling(base_channels, base_layers, width_mult, depth_mult) -> (channels, layers)",
    doc="""Check fn(base_channels, base_layers, width_mult, depth_mult) -> (channels, layers), EfficientNet's scaling of one stage.

    channels = make_divisible(base_channels * width_mult): v = base_channels * width_mult;
    c = max(8, int(v + 4) // 8 * 8), the nearest multiple of 8 (at least 8); if c < 0.9 * v,
    c += 8. layers = math.ceil(base_layers * depth_mult). Both ints.
    """,
    reference=answers.compound_scaling,
    make_cases=_scaling_cases,
    kind="ints",
    mistakes=[
        Mistake(lambda c, n, w, d: (round(c * w), math.ceil(n * d)),
                "round the channels to a multiple of 8 (hardware-friendly widths), with make_divisible's rule"),
        Mistake(lambda c, n, w, d: (max(8, int(c * w + 4) // 8 * 8), math.ceil(n * d)),
                "after rounding to a multiple of 8, add 8 more if the result lost more than 10% of c * width_mult"),
        Mistake(lambda c, n, w, d: (answers.make_divisible(c * w), int(n * d)),
                "round the number of layers up (math.ceil): depth never shrinks below the scaled value"),
        Mistake(lambda c, n, w, d: (answers.make_divisible(c * w), round(n * d)),
                "round the number of layers up (math.ceil), not to the nearest whole number"),
        Mistake(lambda c, n, w, d: (answers.make_divisible(c * d), math.ceil(n * w)),
                "width_mult scales the channels and depth_mult the layers: the two are swapped"),
    ],
)
