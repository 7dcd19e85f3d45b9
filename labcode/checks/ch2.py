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


# ---------------------------------------------------------------------------------------
# Modules that load torchvision's weights: mbconv_block, fused_mbconv_block
#
# Each case hands in (init_args, weights, x): the student's class is built with init_args,
# loads `weights` (a state dict laid out as torchvision's block of the same configuration,
# filled with seeded random values, batch-norm statistics included) and runs x in eval mode.
# tests/test_exercise_kinds.py checks that the layout is torchvision's and that the answer
# key's output equals torchvision's block on the same weights.


def random_weights(cls, init_args: tuple, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A state dict for cls(*init_args), filled from `gen`: weights ~ N(0, 1/fan_in), norms and statistics near 1 and 0."""
    with torch.device("meta"):
        shapes = {k: (tuple(v.shape), v.dtype) for k, v in cls(*init_args).state_dict().items()}
    weights = {}
    for key, (shape, dtype) in shapes.items():
        if key.endswith("num_batches_tracked"):
            weights[key] = torch.zeros(shape, dtype=dtype)
        elif key.endswith("running_var"):
            weights[key] = 0.05 + 0.95 * torch.rand(shape, generator=gen)  # small variances make eps matter
        elif key.endswith(("running_mean", "bias")):
            weights[key] = 0.2 * torch.randn(shape, generator=gen)
        elif len(shape) == 1:  # a norm's scale
            weights[key] = 0.5 + torch.rand(shape, generator=gen)
        else:
            fan_in = math.prod(shape[1:])
            weights[key] = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
    return weights


def _block_cases(name: str, cls, configs: list[tuple]) -> list[Case]:
    gen, rng = seeded(name)
    cases = []
    for config in configs:
        side = rng.choice([5, 7, 8, 9])
        x = torch.randn(2, config[0], side, side, generator=gen)
        cases.append(Case((config, random_weights(cls, config, gen), x)))
    return cases


# Small blocks first (the smallest failing case is shown), then EfficientNetV2-S's own configurations
# (c_in, c_out, expand, k, stride): the first and a repeated block of stages 4 and 5, the first of stage 6.
_MBCONV_CONFIGS = [(8, 8, 4, 3, 1), (8, 16, 4, 3, 2), (16, 16, 1, 3, 1), (8, 16, 6, 5, 1),
                   (64, 128, 4, 3, 2), (128, 128, 4, 3, 1), (128, 160, 6, 3, 1), (160, 160, 6, 3, 1),
                   (160, 256, 6, 3, 2)]
_FUSED_CONFIGS = [(8, 8, 1, 3, 1), (8, 16, 4, 3, 2), (16, 16, 4, 3, 1), (24, 24, 1, 3, 1),
                  (24, 48, 4, 3, 2), (48, 48, 4, 3, 1), (48, 64, 4, 3, 2), (64, 64, 4, 3, 1)]


def _relu_instead(cls):
    class WithReLU(cls):
        def __init__(self, *args):
            super().__init__(*args)
            for name, module in list(self.named_modules()):
                for child, sub in list(module.named_children()):
                    if isinstance(sub, torch.nn.SiLU):
                        setattr(module, child, torch.nn.ReLU())
    return WithReLU


def _default_eps(cls):
    class DefaultEps(cls):
        def __init__(self, *args):
            super().__init__(*args)
            for module in self.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.eps = 1e-5
    return DefaultEps


def _no_residual(cls):
    class NoResidual(cls):
        def forward(self, x):
            return self.block(x)
    return NoResidual


_BLOCK_LAYOUT = """
    Submodules carry torchvision's names, so its state dict loads: everything sits in
    `self.block`, an nn.Sequential. Each convolution is an nn.Sequential of Conv2d (no bias,
    padding (k - 1) // 2), BatchNorm2d(eps=1e-3) and, except for the last 1x1 projection,
    SiLU. The output adds the input when stride == 1 and c_in == c_out.
"""

mbconv_block = declare(
    "mbconv_block",
    signature="mbconv_block(c_in, c_out, expand, k, stride) -> nn.Module class",
    doc="""Check fn(c_in, c_out, expand, k, stride) -> nn.Module: fn is a class, torchvision's MBConv block.

    Each case builds fn(*init_args), loads the weights of torchvision's block of the same
    configuration (EfficientNetV2-S's stages 4-6 among them, random values), and compares
    its output in eval mode on x (N, c_in, H, W). hidden = c_in * expand.
    block.0: 1x1 conv c_in -> hidden (only when expand != 1; the later indices shift down);
    block.1: depthwise k x k conv, stride `stride`, groups = hidden;
    block.2: squeeze-and-excitation: mean over H and W, fc1 (1x1 conv hidden -> max(1, c_in // 4),
             with bias), SiLU, fc2 (1x1 conv back to hidden, with bias), sigmoid, times the input;
    block.3: 1x1 conv hidden -> c_out, BatchNorm, no activation.
    """ + _BLOCK_LAYOUT,
    reference=answers.mbconv_block,
    make_cases=lambda: _block_cases("mbconv_block", answers.MBConvBlock, _MBCONV_CONFIGS),
    kind="module",
    time_limit=30.0,
    forbidden=["torchvision.models.efficientnet.MBConv.forward", "labcode.layers.MBConv.forward"],
    mistakes=[
        Mistake(_no_residual(answers.MBConvBlock),
                "add the input to the output when stride == 1 and c_in == c_out (the residual connection)"),
        Mistake(_relu_instead(answers.MBConvBlock), "EfficientNet's activation is SiLU (x * sigmoid(x)), not ReLU"),
        Mistake(_default_eps(answers.MBConvBlock),
                "torchvision's EfficientNet builds BatchNorm2d with eps=1e-3, not the default 1e-5"),
    ],
)

fused_mbconv_block = declare(
    "fused_mbconv_block",
    signature="fused_mbconv_block(c_in, c_out, expand, k, stride) -> nn.Module class",
    doc="""Check fn(c_in, c_out, expand, k, stride) -> nn.Module: fn is a class, torchvision's Fused-MBConv.

    Each case builds fn(*init_args), loads the weights of torchvision's block of the same
    configuration (EfficientNetV2-S's stages 1-3 among them, random values), and compares
    its output in eval mode on x (N, c_in, H, W). hidden = c_in * expand.
    expand != 1: block.0: k x k conv c_in -> hidden, stride `stride`, BatchNorm, SiLU;
                 block.1: 1x1 conv hidden -> c_out, BatchNorm, no activation.
    expand == 1: block.0 only: k x k conv c_in -> c_out, stride `stride`, BatchNorm, SiLU.
    No squeeze-and-excitation.
    """ + _BLOCK_LAYOUT,
    reference=answers.fused_mbconv_block,
    make_cases=lambda: _block_cases("fused_mbconv_block", answers.FusedMBConvBlock, _FUSED_CONFIGS),
    kind="module",
    time_limit=30.0,
    forbidden=["torchvision.models.efficientnet.FusedMBConv.forward", "labcode.layers.FusedMBConv.forward"],
    mistakes=[
        Mistake(_no_residual(answers.FusedMBConvBlock),
                "add the input to the output when stride == 1 and c_in == c_out (the residual connection)"),
        Mistake(_relu_instead(answers.FusedMBConvBlock), "EfficientNet's activation is SiLU (x * sigmoid(x)), not ReLU"),
        Mistake(_default_eps(answers.FusedMBConvBlock),
                "torchvision's EfficientNet builds BatchNorm2d with eps=1e-3, not the default 1e-5"),
    ],
)


# ---------------------------------------------------------------------------------------
# arithmetic_intensity


def _intensity_cases() -> list[Case]:
    _, rng = seeded("arithmetic_intensity")
    configs = [(1, 1, 1, 1, 1, 1), (4, 4, 3, 8, 8, 1), (4, 4, 3, 8, 8, 4), (96, 96, 3, 56, 56, 96),
               (96, 96, 3, 56, 56, 1), (24, 96, 3, 32, 32, 1)]
    while len(configs) < 80:
        c = rng.choice([8, 16, 24, 32, 48, 64, 128, 256])
        depthwise = rng.random() < 0.5
        configs.append((c, c if depthwise else rng.choice([8, 16, 32, 64, 128, 256]), rng.choice([1, 3, 5]),
                        rng.choice([7, 14, 28, 56, 112]), rng.choice([7, 14, 28, 56, 112]), c if depthwise else 1))
    configs = configs[:6] + sorted(configs[6:], key=lambda t: t[0] * t[1] * t[3] * t[4])
    return [Case(c) for c in configs]


def _intensity_with(macs_scale=1.0, weights=True, groups_in_macs=True, value_bytes=1):
    def intensity(c_in, c_out, k, h, w, groups):
        per_filter = c_in // groups
        macs = c_out * (per_filter if groups_in_macs else c_in) * k * k * h * w * macs_scale
        moved = c_in * h * w + (c_out * per_filter * k * k if weights else 0) + c_out * h * w
        return macs / (moved * value_bytes)
    return intensity


arithmetic_intensity = declare(
    "arithmetic_intensity",
    signature="arithmetic_intensity(c_in, c_out, k, h, w, groups) -> float",
    doc="""Check fn(c_in, c_out, k, h, w, groups) -> float: multiply-adds per value moved, for a k x k convolution.

    Stride 1, 'same' padding, so the output is (c_out, h, w). Multiply-adds:
    c_out * (c_in / groups) * k * k * h * w. Values moved: the input (c_in * h * w), the
    weights (c_out * (c_in / groups) * k * k) and the output (c_out * h * w), each read or
    written once. groups = 1 is a dense convolution, groups = c_in = c_out a depthwise one.
    """,
    reference=answers.arithmetic_intensity,
    make_cases=_intensity_cases,
    kind="number",
    mistakes=[
        Mistake(_intensity_with(groups_in_macs=False),
                "each filter of a grouped convolution sees c_in / groups channels: count c_out * (c_in / groups) * k * k * h * w multiply-adds"),
        Mistake(_intensity_with(weights=False), "the weights are moved too: add c_out * (c_in / groups) * k * k values"),
        Mistake(_intensity_with(macs_scale=2.0), "count multiply-adds, not FLOPs (one multiply-add is 2 FLOPs)"),
        Mistake(_intensity_with(value_bytes=4), "count values, not bytes"),
    ],
)


# ---------------------------------------------------------------------------------------
# progressive_image_sizes


def _progressive_cases() -> list[Case]:
    _, rng = seeded("progressive_image_sizes")
    configs = [(1, 1, 64, 64), (2, 2, 32, 64), (4, 2, 32, 64), (5, 2, 32, 64), (6, 3, 128, 256), (7, 4, 100, 190)]
    while len(configs) < 60:
        stages = rng.randint(1, 6)
        epochs = rng.randint(stages, 40)
        first = rng.choice([16, 32, 64, 96, 128, 160])
        step = rng.choice([0, 4, 8, 16, 32])  # last - first is a multiple of stages - 1: no rounding needed
        configs.append((epochs, stages, first, first + step * max(stages - 1, 0)))
    return [Case(c) for c in configs[:6] + sorted(configs[6:])]


def _progressive_with(fraction=lambda i, m: i / (m - 1) if m > 1 else 1.0, stage_of=lambda e, E, M: e * M // E):
    def sizes(epochs, stages, first, last):
        return [int(first + (last - first) * fraction(stage_of(e, epochs, stages), stages)) for e in range(epochs)]
    return sizes


progressive_image_sizes = declare(
    "progressive_image_sizes",
    signature="progressive_image_sizes(epochs, stages, first, last) -> list of ints",
    doc="""Check fn(epochs, stages, first, last) -> list of `epochs` ints: the training image side of each epoch.

    EfficientNetV2's progressive learning (Algorithm 1): the run is cut into M = stages
    stages; epoch e (counted from 0) of E belongs to stage floor(e * M / E); stage i trains
    at first + (last - first) * i / (M - 1) pixels (at `last` when M = 1). The cases keep
    last - first a multiple of M - 1, so every size is a whole number.
    """,
    reference=answers.progressive_image_sizes,
    make_cases=_progressive_cases,
    kind="ints",
    forbidden=["labcode.progressive.ProgressiveSchedule.stage", "labcode.progressive.ProgressiveSchedule.stages_for"],
    mistakes=[
        Mistake(_progressive_with(fraction=lambda i, m: i / m),
                "the last stage reaches `last`: interpolate with i / (M - 1), not i / M"),
        Mistake(_progressive_with(stage_of=lambda e, E, M: min(M - 1, e // max(1, E // M))),
                "when M does not divide E, use stage = e * M // E: e // (E // M) leaves the last stage too long"),
        Mistake(_progressive_with(fraction=lambda i, m: 1 - i / (m - 1) if m > 1 else 1.0),
                "images grow during training: the first stage uses `first`, the last `last`"),
    ],
)


# ---------------------------------------------------------------------------------------
# Questions, an experiment and a passage with errors


def _one_case() -> list[Case]:
    return [Case(())]


alexnet_biggest_layer = declare(
    "alexnet_biggest_layer",
    signature="alexnet_biggest_layer() -> str",
    doc="""Check fn() -> str, one of 'A'-'D': which layer of torchvision's AlexNet holds the most parameters?
    A: conv1 (11x11, 3 -> 64), B: conv3 (3x3, 192 -> 384), C: the first fully connected layer
    (256 * 6 * 6 -> 4096), D: the classifier (4096 -> 1000).""",
    reference=answers.alexnet_biggest_layer,
    make_cases=_one_case,
    kind="choice",
    options=("A", "B", "C", "D"),
    explanation="""C. 256 * 6 * 6 * 4096 + 4096 = 37,752,832 parameters, about 62% of AlexNet's 61.1 million.
    Convolutions share small kernels across positions (conv1: 23,296; conv3: 663,936), while a
    fully connected layer has a weight for every input-output pair; the classifier has 4,097,000.""",
    mistakes=[
        Mistake(lambda: "A", "conv1's kernels are big (11x11), but there are only 3 * 64 of them: 23,296 parameters"),
        Mistake(lambda: "B", "conv3 has 3 * 3 * 192 * 384 + 384 = 663,936 parameters: count a fully connected layer too"),
        Mistake(lambda: "D", "the classifier has 4096 * 1000 + 1000 = 4,097,000: compare with the layer before it"),
    ],
)

fused_mbconv_cost = declare(
    "fused_mbconv_cost",
    signature="fused_mbconv_cost() -> str",
    doc="""Check fn() -> str, one of 'A'-'C': at 48 channels, expansion 4, 3x3 (EfficientNetV2-S's stage 3),
    the Fused-MBConv's single 3x3 conv (48 -> 192) against MBConv's 1x1 expansion (48 -> 192) plus
    3x3 depthwise conv (192 channels) has A: fewer multiply-adds, B: more, C: the same.""",
    reference=answers.fused_mbconv_cost,
    make_cases=_one_case,
    kind="choice",
    options=("A", "B", "C"),
    explanation="""B, about 7.6x more per position: 48 * 192 * 9 = 82,944 against 48 * 192 + 192 * 9 = 10,944.
    Fused-MBConv is still faster in the early stages because accelerators run a dense convolution
    close to their peak, while a depthwise one does few multiply-adds per value it moves (low
    arithmetic intensity) and waits on memory. In the late stages the extra work wins, so
    EfficientNetV2 fuses only stages 1-3.""",
    mistakes=[
        Mistake(lambda: "A", "count them: a 3x3 conv from 48 to 192 channels against a 1x1 conv plus a 3x3 depthwise one"),
        Mistake(lambda: "C", "one dense 3x3 conv replaces a 1x1 conv and a depthwise conv: count the multiply-adds of each"),
    ],
)

resolution_experiment = declare(
    "resolution_experiment",
    signature="resolution_experiment() -> str",
    doc="""Check fn() -> str, one of 'A'-'D': after your run at IMAGE_SIZE = 112 instead of 224, what happened to
    EfficientNetV2-S's multiply-adds and parameters? A: both fell to about a quarter,
    B: multiply-adds fell to about a quarter, parameters stayed the same, C: multiply-adds fell
    to about a half, parameters stayed the same, D: neither changed.""",
    reference=answers.resolution_experiment,
    make_cases=_one_case,
    kind="choice",
    options=("A", "B", "C", "D"),
    explanation="""B. Halving the side leaves a quarter of the positions in every feature map, and each
    position costs the same multiply-adds; the weights do not depend on the image size (global
    average pooling feeds the classifier). This is why progressive learning trains the first
    epochs on small images: each step is cheaper, with the same model.""",
    mistakes=[
        Mistake(lambda: "A", "look at the parameter count your run printed: did it change?"),
        Mistake(lambda: "C", "the cost scales with the number of positions, H * W: halving the side divides it by?"),
        Mistake(lambda: "D", "run the cell with IMAGE_SIZE = 112 and compare the two lines it prints"),
    ],
)

spot_errors_efficientnet = declare(
    "spot_errors_efficientnet",
    signature="spot_errors_efficientnet() -> set of sentence numbers",
    doc="""Check fn() -> set of ints: the numbers (1-7) of the wrong sentences in the passage on AlexNet and EfficientNetV2.""",
    reference=answers.spot_errors_efficientnet,
    make_cases=_one_case,
    kind="choice",
    options=(1, 2, 3, 4, 5, 6, 7),
    explanation="""2, 3 and 6. (2) Before AlexNet, the ImageNet entries used hand-engineered features (SIFT,
    Fisher vectors) with linear classifiers, not neural networks. (3) Compound scaling is EfficientNet
    V1's idea (2019); V2's own are training-aware search, Fused-MBConv in the early stages, a
    non-uniform scaling rule and progressive learning. (6) Fused-MBConv has more parameters and
    multiply-adds than the pair it replaces; it is faster early on because dense convolutions use
    the hardware better. Sentences 1, 4, 5 and 7 are right.""",
    mistakes=[
        Mistake(lambda: {3, 6}, "read sentence 2 again: what did the ImageNet entries before 2012 use?"),
        Mistake(lambda: {2, 6}, "read sentence 3 again: which paper introduced compound scaling?"),
        Mistake(lambda: {2, 3}, "read sentence 6 again: count the multiply-adds of a dense 3x3 conv against 1x1 + depthwise"),
        Mistake(lambda: {2, 3, 6, 7}, "sentence 7 is right: 15.3% top-5 error against 26.2% for the second-best entry"),
    ],
)
