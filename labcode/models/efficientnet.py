"""EfficientNetV2: the S, M and L models, a small one for 28x28 / 32x32 images, and the stage tables.

Tan & Le, "EfficientNetV2: Smaller Models and Faster Training", ICML 2021 (arXiv
2104.00298). It builds on EfficientNet (V1; Tan & Le, ICML 2019, arXiv 1905.11946):
a stem conv, stages of MBConv blocks (MobileNetV2's inverted residual with
squeeze-and-excitation), a 1x1 head conv, global pooling and one linear classifier. V2
uses Fused-MBConv in the early stages, smaller expansion ratios there, and 3x3 kernels
throughout (the blocks are in labcode/layers/mbconv.py).

Each configuration is a literal list of `Stage` rows, one per row of the paper's table 4
(EfficientNetV2-S). The S rows are the released model's: stage 6 has 256 channels and the
head 1280, where the paper's first arXiv version printed 272 and 1792 (kept below as
`S_ARXIV_V1_*` so the chapter can show both). M and L use the same rows as torchvision's
builders. Every full-size builder loads torchvision's state dict with strict=True: the
blocks read torchvision's `block.0`, `block.1`, ... keys into their named parts, and
`labcode.layers.mbconv.torchvision_state_dict(model)` writes them back.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch import Tensor, nn

from labcode import validate
from labcode.layers.conv import Linear
from labcode.layers.mbconv import ConvNormAct, FusedMBConv, MBConv, round_to_multiple

BLOCKS = {"FusedMBConv": FusedMBConv, "MBConv": MBConv}


@dataclass(frozen=True)
class Stage:
    """One row of the stage table: `layers` blocks of one type; the first may change size."""

    block: str  # "FusedMBConv" or "MBConv"
    expand_ratio: int  # inner width = in_channels * expand_ratio
    kernel: int
    stride: int  # of the stage's first block; the others use 1
    in_channels: int
    out_channels: int
    layers: int
    se_ratio: float  # squeeze width = in_channels * se_ratio; 0: no squeeze-and-excitation


# Each row: Stage(block, e = expand_ratio, k = kernel, s = stride, in = in_channels,
# out = out_channels, n = layers, se = se_ratio); S is the paper's table 4 line by line.
#          block         e  k  s   in  out   n  se
EFFICIENTNET_V2_S: list[Stage] = [
    Stage("FusedMBConv", 1, 3, 1,  24,  24,  2, 0.0),
    Stage("FusedMBConv", 4, 3, 2,  24,  48,  4, 0.0),
    Stage("FusedMBConv", 4, 3, 2,  48,  64,  4, 0.0),
    Stage("MBConv",      4, 3, 2,  64, 128,  6, 0.25),
    Stage("MBConv",      6, 3, 1, 128, 160,  9, 0.25),
    Stage("MBConv",      6, 3, 2, 160, 256, 15, 0.25),
]
EFFICIENTNET_V2_M: list[Stage] = [
    Stage("FusedMBConv", 1, 3, 1,  24,  24,  3, 0.0),
    Stage("FusedMBConv", 4, 3, 2,  24,  48,  5, 0.0),
    Stage("FusedMBConv", 4, 3, 2,  48,  80,  5, 0.0),
    Stage("MBConv",      4, 3, 2,  80, 160,  7, 0.25),
    Stage("MBConv",      6, 3, 1, 160, 176, 14, 0.25),
    Stage("MBConv",      6, 3, 2, 176, 304, 18, 0.25),
    Stage("MBConv",      6, 3, 1, 304, 512,  5, 0.25),
]
EFFICIENTNET_V2_L: list[Stage] = [
    Stage("FusedMBConv", 1, 3, 1,  32,  32,  4, 0.0),
    Stage("FusedMBConv", 4, 3, 2,  32,  64,  7, 0.0),
    Stage("FusedMBConv", 4, 3, 2,  64,  96,  7, 0.0),
    Stage("MBConv",      4, 3, 2,  96, 192, 10, 0.25),
    Stage("MBConv",      6, 3, 1, 192, 224, 19, 0.25),
    Stage("MBConv",      6, 3, 2, 224, 384, 25, 0.25),
    Stage("MBConv",      6, 3, 1, 384, 640,  7, 0.25),
]
# Course scale, 28x28 or 32x32 input: stem 28 -> 14, then 14 -> 7 -> 4 -> 4 (32: 16 -> 8 -> 4).
EFFICIENTNET_V2_SMALL: list[Stage] = [
    Stage("FusedMBConv", 1, 3, 1,  16,  16,  1, 0.0),
    Stage("FusedMBConv", 4, 3, 2,  16,  32,  1, 0.0),
    Stage("MBConv",      4, 3, 2,  32,  48,  2, 0.25),
    Stage("MBConv",      4, 3, 1,  48,  64,  1, 0.25),
]

HEAD_CHANNELS = 1280  # the 1x1 head conv of S, M and L
# What the paper's first arXiv version (2104.00298v1) printed for EfficientNetV2-S; the
# released code (and every major implementation) uses 256 and 1280.
S_ARXIV_V1_STAGE6_CHANNELS = 272
S_ARXIV_V1_HEAD_CHANNELS = 1792


@dataclass(frozen=True)
class Variant:
    """A whole network: its stage rows, stem stride, head width and regularization."""

    stages: tuple[Stage, ...]
    head_channels: int
    dropout: float  # before the classifier
    stem_stride: int = 2
    stochastic_depth_prob: float = 0.2  # for the last block; scaled linearly over blocks


VARIANTS: dict[str, Variant] = {
    "s": Variant(tuple(EFFICIENTNET_V2_S), HEAD_CHANNELS, dropout=0.2),
    "m": Variant(tuple(EFFICIENTNET_V2_M), HEAD_CHANNELS, dropout=0.3),
    "l": Variant(tuple(EFFICIENTNET_V2_L), HEAD_CHANNELS, dropout=0.4),
    "s-arxiv-v1": Variant(
        tuple(EFFICIENTNET_V2_S[:-1]) + (replace(EFFICIENTNET_V2_S[-1], out_channels=S_ARXIV_V1_STAGE6_CHANNELS),),
        S_ARXIV_V1_HEAD_CHANNELS,
        dropout=0.2,
    ),
    "small": Variant(tuple(EFFICIENTNET_V2_SMALL), 256, dropout=0.2, stochastic_depth_prob=0.1),
}


def _operator(stage: Stage) -> str:
    name = "Fused-MBConv" if stage.block == "FusedMBConv" else "MBConv"
    text = f"{name}{stage.expand_ratio}, k{stage.kernel}x{stage.kernel}"
    if stage.se_ratio > 0:
        text += f", SE{stage.se_ratio:g}"
    return text


def stage_table(variant: str = "s") -> list[dict]:
    """The network as the paper's table: one dict per stage (stage, operator, stride, channels, layers).

    Stage 0 is the stem and the last row the head, as in the paper's table 4; the MBConv
    rows also carry the `Stage` fields (expand_ratio, kernel, in_channels, se_ratio).

    Args:
        variant: "s", "m", "l", "small" or "s-arxiv-v1" (the paper's first printed S table).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    v = VARIANTS[variant]
    rows = [dict(stage=0, operator="Conv3x3", stride=v.stem_stride, channels=v.stages[0].in_channels, layers=1)]
    for i, s in enumerate(v.stages, start=1):
        rows.append(
            dict(
                stage=i, operator=_operator(s), stride=s.stride, channels=s.out_channels, layers=s.layers,
                block=s.block, expand_ratio=s.expand_ratio, kernel=s.kernel, in_channels=s.in_channels,
                se_ratio=s.se_ratio,
            )
        )
    rows.append(
        dict(stage=len(v.stages) + 1, operator="Conv1x1 & Pooling & FC", stride=None, channels=v.head_channels, layers=1)
    )
    return rows


# -- compound scaling (EfficientNet V1, sec. 3.3): width and depth multipliers --------------


def scale_width(channels: int, width_mult: float) -> int:
    """Channels times `width_mult`, rounded to a multiple of 8 (never more than 10% down)."""
    return round_to_multiple(channels * width_mult, 8)


def scale_depth(layers: int, depth_mult: float) -> int:
    """Layers times `depth_mult`, rounded up: a stage never loses its last block."""
    return int(math.ceil(layers * depth_mult))


def scale_stages(stages: Sequence[Stage], width_mult: float = 1.0, depth_mult: float = 1.0) -> list[Stage]:
    """The stage rows widened by `width_mult` and deepened by `depth_mult`.

    Args:
        stages: the rows to scale.
        width_mult: multiplier on every channel count (rounded to multiples of 8).
        depth_mult: multiplier on every stage's number of layers (rounded up).
    """
    if width_mult <= 0 or depth_mult <= 0:
        raise ValueError(f"multipliers must be > 0, got width {width_mult}, depth {depth_mult}")
    return [
        replace(
            s,
            in_channels=scale_width(s.in_channels, width_mult),
            out_channels=scale_width(s.out_channels, width_mult),
            layers=scale_depth(s.layers, depth_mult),
        )
        for s in stages
    ]


# -- the network ------------------------------------------------------------------------


class EfficientNetV2(nn.Module):
    """Stem conv -> stages of (Fused-)MBConv blocks -> 1x1 head conv -> pool -> dropout -> linear.

    Args:
        stages: the stage rows (e.g. EFFICIENTNET_V2_S).
        num_classes: number of output classes.
        head_channels: width of the 1x1 head conv (1280 for S, M, L).
        dropout: dropout probability before the classifier.
        stochastic_depth_prob: drop probability of the last block; block i of n gets p * i / n.
        in_channels: channels of the input images.
        stem_stride: stride of the 3x3 stem conv (2 for ImageNet).
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        num_classes: int = 1000,
        head_channels: int = HEAD_CHANNELS,
        dropout: float = 0.2,
        stochastic_depth_prob: float = 0.2,
        in_channels: int = 3,
        stem_stride: int = 2,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        for arg, value in (("num_classes", num_classes), ("head_channels", head_channels),
                           ("in_channels", in_channels), ("stem_stride", stem_stride)):
            validate.positive_int(name, arg, value)
        validate.probability(name, "dropout", dropout)
        validate.probability(name, "stochastic_depth_prob", stochastic_depth_prob)
        if not stages:
            raise ValueError("stages must hold at least one Stage row, got none")
        for s in stages:
            if s.block not in BLOCKS:
                raise ValueError(f"Stage.block must be one of {sorted(BLOCKS)}, got {s.block!r}")
        self.in_channels = in_channels
        self.stages = list(stages)
        # features.0: stem, a plain 3x3 conv (stride 2 for ImageNet)
        layers: list[nn.Module] = [
            ConvNormAct(in_channels, stages[0].in_channels, 3, stem_stride, role="stem 3x3")
        ]
        total_blocks = sum(s.layers for s in stages)
        block_id = 0
        for s in stages:  # features.1 ... features.len(stages)
            blocks: list[nn.Module] = []
            for i in range(s.layers):
                # Deeper blocks are dropped more often: 0 for the first, close to p for the last.
                p = stochastic_depth_prob * block_id / total_blocks
                blocks.append(
                    BLOCKS[s.block](
                        in_channels=s.in_channels if i == 0 else s.out_channels,
                        out_channels=s.out_channels,
                        expand_ratio=s.expand_ratio,
                        kernel_size=s.kernel,
                        stride=s.stride if i == 0 else 1,
                        se_ratio=s.se_ratio,
                        stochastic_depth_prob=p,
                    )
                )
                block_id += 1
            layers.append(nn.Sequential(*blocks))
        # features.-1: head, 1x1 conv to a wide feature vector per position
        layers.append(ConvNormAct(stages[-1].out_channels, head_channels, 1, role="head 1x1"))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), Linear(head_channels, num_classes))
        self._init_weights()
        validate.trust_inner_layers(self)  # forward checks the batch once

    def _init_weights(self) -> None:
        # He init on the convs (fan_out), BN as identity, small uniform on the classifier
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        validate.image_batch(type(self).__name__, x, self.in_channels)
        x = self.features(x)  # (B, head_channels, H / 32, W / 32) for ImageNet models
        x = self.avgpool(x)  # (B, head_channels, 1, 1)
        x = torch.flatten(x, 1)  # (B, head_channels)
        return self.classifier(x)  # (B, num_classes)


def _build(variant: str, num_classes: int, in_channels: int = 3) -> EfficientNetV2:
    v = VARIANTS[variant]
    return EfficientNetV2(
        v.stages,
        num_classes=num_classes,
        head_channels=v.head_channels,
        dropout=v.dropout,
        stochastic_depth_prob=v.stochastic_depth_prob,
        in_channels=in_channels,
        stem_stride=v.stem_stride,
    )


def efficientnet_v2_s(num_classes: int = 1000) -> EfficientNetV2:
    """EfficientNetV2-S (21,458,488 parameters with 1000 classes; trained at 384 px)."""
    return _build("s", num_classes)


def efficientnet_v2_m(num_classes: int = 1000) -> EfficientNetV2:
    """EfficientNetV2-M (54,139,356 parameters with 1000 classes; trained at 480 px)."""
    return _build("m", num_classes)


def efficientnet_v2_l(num_classes: int = 1000) -> EfficientNetV2:
    """EfficientNetV2-L (118,515,272 parameters with 1000 classes; trained at 480 px)."""
    return _build("l", num_classes)


def efficientnet_v2_small(num_classes: int = 10, in_channels: int = 1) -> EfficientNetV2:
    """EfficientNetV2's blocks at course scale, for 28x28 or 32x32 images (~0.1M parameters)."""
    return _build("small", num_classes, in_channels)
