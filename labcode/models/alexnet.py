"""AlexNet: torchvision's single-tower version, the 2012 paper's two-tower one, and a small one.

Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional Neural
Networks", NeurIPS 2012. The paper split the network over two GPUs: conv2, conv4 and
conv5 only see the feature maps on their own GPU, which is a grouped convolution with
groups=2; conv3 and the fully connected layers talk across GPUs. It also used local
response normalization (LRN) after conv1 and conv2 and overlapping max pooling (3x3,
stride 2). `AlexNet2012` builds that network: 60,965,224 parameters for 227x227 inputs.

torchvision's `alexnet` follows Krizhevsky's later single-GPU variant ("One weird trick
for parallelizing convolutional neural networks", arXiv 1404.5997): 64-192-384-256-256
channels, no groups, no LRN, and an adaptive average pool so any input of at least
63x63 works. `AlexNet` here has its parameter names, so its weights load with strict=True.

`alexnet_small` keeps the recipe (ReLU convs, overlapping max pool, dropout, three fully
connected layers) at the scale of 28x28 and 32x32 images.

Each network's convolutions are a table, one row per conv layer, as in the paper.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from labcode import validate
from labcode.layers.conv import Conv2d, Linear
from labcode.layers.pool import MaxPool2d


@dataclass(frozen=True)
class ConvLayer:
    """One row of AlexNet's table: a conv, its ReLU, then optional LRN and max pool."""

    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    groups: int = 1  # 2 = the paper's two GPUs, each seeing half of the input maps
    lrn: bool = False  # local response normalization after the ReLU
    pool: tuple[int, int] | None = None  # (kernel, stride) of the max pool that follows


# torchvision's alexnet (the "one weird trick" single-tower variant).
TORCHVISION_CONVS: list[ConvLayer] = [
    ConvLayer(64, 11, stride=4, padding=2, pool=(3, 2)),
    ConvLayer(192, 5, padding=2, pool=(3, 2)),
    ConvLayer(384, 3, padding=1),
    ConvLayer(256, 3, padding=1),
    ConvLayer(256, 3, padding=1, pool=(3, 2)),
]

# The 2012 paper (sec. 3.5 and fig. 2), 227x227 input: 55 -> 27 -> 13 -> 13 -> 13 -> 6.
PAPER_2012_CONVS: list[ConvLayer] = [
    ConvLayer(96, 11, stride=4, padding=0, lrn=True, pool=(3, 2)),  # (B, 96, 55, 55) -> 27
    ConvLayer(256, 5, padding=2, groups=2, lrn=True, pool=(3, 2)),  # (B, 256, 27, 27) -> 13
    ConvLayer(384, 3, padding=1),  # (B, 384, 13, 13), sees both towers
    ConvLayer(384, 3, padding=1, groups=2),  # (B, 384, 13, 13)
    ConvLayer(256, 3, padding=1, groups=2, pool=(3, 2)),  # (B, 256, 13, 13) -> 6
]

# Course scale, 28x28 or 32x32 input: 28 -> 14 -> 7 -> 3 (32 -> 16 -> 8 -> 3).
SMALL_CONVS: list[ConvLayer] = [
    ConvLayer(16, 3, padding=1, pool=(2, 2)),
    ConvLayer(32, 3, padding=1, pool=(2, 2)),
    ConvLayer(64, 3, padding=1),
    ConvLayer(64, 3, padding=1),
    ConvLayer(32, 3, padding=1, pool=(3, 2)),
]

# The paper's LRN hyperparameters: k = 2, n = 5, alpha = 1e-4, beta = 0.75. The paper
# divides by (k + alpha * sum of squares)^beta; torch's LocalResponseNorm divides by
# (k + alpha / n * sum)^beta, so torch's alpha must be n * 1e-4 to give the paper's layer.
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0


def conv_table(convs: Sequence[ConvLayer] = PAPER_2012_CONVS, in_channels: int = 3, size: int = 227) -> list[dict]:
    """The conv rows with what they do to a `size` x `size` input, one dict per layer.

    Each dict holds the row's fields plus `in_channels`, `conv_size` (side after the conv,
    floor((n + 2p - k) / s) + 1), `out_size` (after the pool, if any) and `params`.

    Args:
        convs: the rows (default: the 2012 paper's).
        in_channels: channels of the input image.
        size: side of the (square) input image.
    """
    rows = []
    for i, row in enumerate(convs, start=1):
        conv_size = (size + 2 * row.padding - row.kernel_size) // row.stride + 1
        out_size = conv_size if row.pool is None else (conv_size - row.pool[0]) // row.pool[1] + 1
        if conv_size < 1 or out_size < 1:
            raise ValueError(f"conv{i}: a {size}x{size} input is too small for this table")
        params = row.out_channels * (in_channels // row.groups) * row.kernel_size**2 + row.out_channels
        rows.append(dict(layer=f"conv{i}", in_channels=in_channels, **asdict(row),
                         conv_size=conv_size, out_size=out_size, params=params))
        in_channels, size = row.out_channels, out_size
    return rows


class AlexNet(nn.Module):
    """AlexNet built from a table of conv rows; by default torchvision's alexnet.

    Args:
        num_classes: number of output classes.
        dropout: dropout probability before the first two fully connected layers.
        in_channels: channels of the input images.
        convs: the conv rows (default: torchvision's).
        pool_size: side of the adaptive average pool before the classifier (6 for 224 px).
        hidden: width of the two hidden fully connected layers.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        dropout: float = 0.5,
        in_channels: int = 3,
        convs: Sequence[ConvLayer] = TORCHVISION_CONVS,
        pool_size: int = 6,
        hidden: int = 4096,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        for arg, value in (("num_classes", num_classes), ("in_channels", in_channels),
                           ("pool_size", pool_size), ("hidden", hidden)):
            validate.positive_int(name, arg, value)
        validate.probability(name, "dropout", dropout)
        self.in_channels = in_channels
        self.convs = list(convs)
        layers: list[nn.Module] = []
        channels = in_channels
        for row in self.convs:
            layers.append(Conv2d(channels, row.out_channels, row.kernel_size, row.stride, row.padding, groups=row.groups))
            layers.append(nn.ReLU(inplace=True))
            if row.lrn:
                layers.append(nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_SIZE * LRN_ALPHA, beta=LRN_BETA, k=LRN_K))
            if row.pool is not None:
                layers.append(MaxPool2d(kernel_size=row.pool[0], stride=row.pool[1]))
            channels = row.out_channels
        # torchvision's names: features.0 is conv1, features.3 conv2, ... classifier.1/.4/.6
        self.features = nn.Sequential(*layers)
        # Identity at the intended input size (6x6 at 224 or 227 px); lets other sizes through.
        self.avgpool = nn.AdaptiveAvgPool2d((pool_size, pool_size))
        flat = channels * pool_size * pool_size  # 256 * 6 * 6 = 9216 for the ImageNet models
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            Linear(flat, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            Linear(hidden, num_classes),
        )
        validate.trust_inner_layers(self)  # forward checks the batch once

    def forward(self, x: Tensor) -> Tensor:
        validate.image_batch(type(self).__name__, x, self.in_channels)
        x = self.features(x)  # (B, 256, 6, 6) at 224 px
        x = self.avgpool(x)  # (B, C, pool_size, pool_size)
        x = torch.flatten(x, 1)  # (B, C * pool_size * pool_size)
        return self.classifier(x)  # (B, num_classes)


class AlexNet2012(AlexNet):
    """The 2012 paper's AlexNet: two towers (groups=2), LRN, overlapping pooling, 227x227 input.

    Args:
        num_classes: number of output classes.
        dropout: dropout probability in the first two fully connected layers (paper: 0.5).
        in_channels: channels of the input images.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, in_channels: int = 3) -> None:
        super().__init__(num_classes, dropout, in_channels, convs=PAPER_2012_CONVS, pool_size=6, hidden=4096)


def alexnet(num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    """torchvision's AlexNet (61,100,840 parameters with 1000 classes)."""
    return AlexNet(num_classes=num_classes, dropout=dropout)


def alexnet2012(num_classes: int = 1000, dropout: float = 0.5) -> AlexNet2012:
    """The 2012 paper's two-tower AlexNet (60,965,224 parameters with 1000 classes)."""
    return AlexNet2012(num_classes=num_classes, dropout=dropout)


def alexnet_small(num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5) -> AlexNet:
    """AlexNet's recipe for 28x28 or 32x32 images: five convs, three FC layers, ~0.13M parameters."""
    return AlexNet(num_classes, dropout, in_channels, convs=SMALL_CONVS, pool_size=3, hidden=128)
