"""The receptive field of a CNN, its gradient footprint, and a ViT's mean attention distance.

The receptive field of a unit is the square of input pixels that can change its value.
For a chain of layers with kernels k_l, strides s_l, paddings p_l and dilations d_l it
follows from two running quantities (Araujo, Norris & Sim, "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019, doi:10.23915/distill.00021):

    jump     j_l = j_(l-1) * s_l                      (input pixels between neighbouring units)
    size     r_l = r_(l-1) + (k'_l - 1) * j_(l-1)      (k'_l = d_l (k_l - 1) + 1, the dilated span)
    offset   P_l = P_(l-1) + p_l * j_(l-1)            (the padding, in input pixels)

with j_0 = r_0 = 1 and P_0 = 0; unit x of layer l then sees input pixels x * j_l - P_l up to
x * j_l - P_l + r_l - 1. `receptive_field_table` computes these for a list of layers or a
model, and `gradient_footprint` measures the same thing on a real network: the input pixels
whose gradient is non-zero for one output position.

What is assumed when walking a model (`layers_of`): the modules run in the order they are
registered (true of nn.Sequential, torchvision's AlexNet and EfficientNet, and labcode's
models and blocks); convolutions and pooling layers set the receptive field; activations,
normalisation, dropout and channel-only layers do not; residual shortcuts are identities, so
a block's branch sets its receptive field. Squeeze-and-excitation is left out: its gate is
a global average, so strictly every unit after it depends on every pixel, but only through
one number per channel; the receptive field counts the convolutional path (the test shows
both). The walk stops at the first layer that mixes all positions (adaptive pooling,
flatten, linear): from there on every unit sees the whole image. Square kernels only.

`mean_attention_distance` is the ViT paper's figure 7 (right) measure (Dosovitskiy et al.,
ICLR 2021): for each head, the attention-weighted distance in pixels between a query patch
and the key patches, averaged over queries and images. Luo et al. (NeurIPS 2016,
"Understanding the Effective Receptive Field in Deep Convolutional Neural Networks") show
that the gradient inside the receptive field is far from uniform: most of it sits near the
centre.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Window:
    """A layer as the receptive field sees it: a square sliding window."""

    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    name: str = ""

    def __post_init__(self) -> None:
        for field, low in (("kernel", 1), ("stride", 1), ("padding", 0), ("dilation", 1)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Window{f' {self.name!r}' if self.name else ''}: {field} must be an "
                                 f"int >= {low}, got {value!r}")

    @property
    def span(self) -> int:
        """Input positions the window covers, holes of a dilated kernel included: d (k - 1) + 1."""
        return self.dilation * (self.kernel - 1) + 1


@dataclass(frozen=True)
class RFRow:
    """One layer of `receptive_field_table`, sizes in input pixels."""

    name: str
    kernel: int  # the window's span d (k - 1) + 1
    stride: int
    jump: int  # product of the strides up to and including this layer
    size: int  # receptive field r_l of one unit of this layer's output
    offset: int  # unit x sees input pixels x * jump - offset ... x * jump - offset + size - 1


# Layers that act on each position (or each channel) alone: they leave the receptive field as it is.
POINTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
    nn.Hardsigmoid, nn.Identity, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
    nn.Dropout, nn.Dropout2d,
)
# Layers after which every unit sees the whole image: the walk stops there.
GLOBAL = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Linear)


def _square(name: str, what: str, value) -> int:
    if isinstance(value, tuple):
        if len(set(value)) != 1:
            raise ValueError(f"receptive field: {name} has a non-square {what} {value}; only square "
                             "windows are handled")
        value = value[0]
    return int(value)


def _window(name: str, module: nn.Module) -> Window:
    kernel = _square(name, "kernel", module.kernel_size)
    dilation = _square(name, "dilation", getattr(module, "dilation", 1))
    stride = _square(name, "stride", module.stride)
    padding = module.padding
    if padding == "valid":
        padding = 0
    elif padding == "same":
        padding = dilation * (kernel - 1) // 2  # torch puts the smaller half first
    return Window(kernel, stride, _square(name, "padding", padding), dilation, name)


def _skipped(module: nn.Module) -> bool:
    # squeeze-and-excitation and stochastic depth: see the module docstring
    return isinstance(module, POINTWISE) or type(module).__name__ in (
        "SqueezeExcitation", "StochasticDepth")


def layers_of(model: nn.Module) -> list[Window]:
    """The windows of `model`'s convolutions and pooling layers, in order (assumptions: module docstring).

    Args:
        model: an nn.Module; its children are walked in the order they were registered.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"layers_of: expected a torch.nn.Module, got {type(model).__name__}")
    windows: list[Window] = []

    def walk(module: nn.Module, name: str) -> bool:  # False once a global layer is reached
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            windows.append(_window(name or type(module).__name__, module))
            return True
        if isinstance(module, GLOBAL):
            return False
        if _skipped(module):
            return True
        children = list(module.named_children())
        if not children:
            raise TypeError(
                f"layers_of: do not know how {name or 'the model'} ({type(module).__name__}) moves "
                "pixels; expected Conv2d, MaxPool2d, AvgPool2d, a pointwise layer or a container")
        return all(walk(child, f"{name}.{n}" if name else n) for n, child in children)

    walk(model, "")
    return windows


def _as_windows(layers) -> list[Window]:
    if isinstance(layers, nn.Module):
        return layers_of(layers)
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
        raise TypeError("receptive field: expected an nn.Module or a list of layers (Window, "
                        f"(kernel, stride[, padding[, dilation]]) or modules), got {type(layers).__name__}")
    windows: list[Window] = []
    for i, layer in enumerate(layers):
        if isinstance(layer, Window):
            windows.append(layer)
        elif isinstance(layer, nn.Module):
            windows.extend(layers_of(layer))
        elif isinstance(layer, (tuple, list)) and 2 <= len(layer) <= 4:
            windows.append(Window(*layer, name=f"layer {i}"))
        else:
            raise TypeError(f"receptive field: layer {i} must be a Window, a tuple (kernel, stride"
                            f"[, padding[, dilation]]) or an nn.Module, got {layer!r}")
    return windows


def receptive_field_table(layers) -> list[RFRow]:
    """Jump, receptive field and offset after each layer (the recurrences of the module docstring).

    Args:
        layers: an nn.Module, or a list of `Window`s, (kernel, stride[, padding[, dilation]])
            tuples or modules.
    """
    rows: list[RFRow] = []
    jump, size, offset = 1, 1, 0
    for w in _as_windows(layers):
        size = size + (w.span - 1) * jump  # r_l = r_(l-1) + (k_l - 1) * j_(l-1)
        offset = offset + w.padding * jump
        jump = jump * w.stride  # j_l = j_(l-1) * s_l
        rows.append(RFRow(w.name, w.span, w.stride, jump, size, offset))
    return rows


def receptive_field(layers) -> int:
    """The receptive field, in input pixels per side, of one unit after the last layer.

    Args:
        layers: as for `receptive_field_table`; an empty list gives 1 (a pixel sees itself).
    """
    rows = receptive_field_table(layers)
    return rows[-1].size if rows else 1


def input_window(layers, index: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """The input rows and columns (first, last), inclusive, that output unit `index` = (i, j) sees.

    They may reach beyond the image (negative, or past its last pixel): that part is padding.
    """
    if (not isinstance(index, tuple) or len(index) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in index)):
        raise ValueError(f"input_window: index must be a pair of ints >= 0 (row, column), got {index!r}")
    rows = receptive_field_table(layers)
    jump, size, offset = (rows[-1].jump, rows[-1].size, rows[-1].offset) if rows else (1, 1, 0)
    return tuple((v * jump - offset, v * jump - offset + size - 1) for v in index)  # type: ignore[return-value]


def input_gradient(model: nn.Module, images: Tensor, index: tuple[int, int] | None = None,
                   ) -> tuple[Tensor, tuple[int, int]]:
    """How strongly each input pixel moves the output units at one position: summed |gradient|, (H, W).

    The model runs in eval mode (batch norm then uses its running statistics, so images do
    not mix); the outputs of every channel at `index` are summed and differentiated with
    respect to the images, and the absolute gradients are summed over images and channels.

    Args:
        model: maps (B, C, H, W) images to (B, C', H', W') feature maps.
        images: (B, C, H, W) floating-point images.
        index: the output position (row, column); the centre of the output by default.

    Returns:
        The (H, W) map, and the output position used.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"input_gradient: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"input_gradient: images must be a floating (B, C, H, W) tensor, got {shape}")
    was_training = model.training
    model.eval()
    try:
        x = images.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = model(x)
            if out.dim() != 4:
                raise ValueError("input_gradient: the model must return feature maps (B, C, H, W), "
                                 f"got shape {tuple(out.shape)}")
            h, w = out.shape[-2:]
            if index is None:
                index = ((h - 1) // 2, (w - 1) // 2)
            if not (0 <= index[0] < h and 0 <= index[1] < w):
                raise ValueError(f"input_gradient: index {index} is outside the {h}x{w} output")
            out[:, :, index[0], index[1]].sum().backward()
    finally:
        model.train(was_training)
    return x.grad.abs().sum(dim=(0, 1)), index


def gradient_footprint(model: nn.Module, images: Tensor, index: tuple[int, int] | None = None,
                       ) -> tuple[Tensor, tuple[int, int]]:
    """The input pixels whose gradient is non-zero for the output units at one position.

    A pixel counts if its gradient is non-zero for any image or channel: max pooling and
    ReLU pass gradient through only some of their inputs, and several random images
    together find every pixel that can matter. Arguments as for `input_gradient`.

    Returns:
        A boolean (H, W) mask, and the output position used.
    """
    grad, index = input_gradient(model, images, index)
    return grad != 0, index


def mean_attention_distance(maps: Sequence[Tensor], patch_size: int) -> Tensor:
    """Each head's mean attention distance in pixels (ViT paper, figure 7 right), shape (L, h).

    For one query patch, the distances in pixels from its centre to every key patch's centre
    are averaged with the query's attention weights; that is averaged over all query
    patches and all images. The class token is left out as query and as key, and each query's
    weights over the patches are rescaled to sum to 1.

    Args:
        maps: one (B, h, N+1, N+1) attention tensor per block, as `model.attention_maps` returns;
            the N patches form a square grid in row-major order.
        patch_size: side of a patch in pixels.
    """
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"mean_attention_distance: patch_size must be an int >= 1, got {patch_size!r}")
    if isinstance(maps, Tensor) or not isinstance(maps, Sequence) or len(maps) == 0:
        raise ValueError("mean_attention_distance: maps must be a non-empty list of (B, h, N+1, N+1) "
                         f"tensors, one per block, got {type(maps).__name__}")
    distances = []
    for layer, a in enumerate(maps):
        if not isinstance(a, Tensor) or a.dim() != 4 or a.shape[-1] != a.shape[-2]:
            shape = tuple(a.shape) if isinstance(a, Tensor) else type(a).__name__
            raise ValueError(f"mean_attention_distance: block {layer} must be (B, h, N+1, N+1), got {shape}")
        n = a.shape[-1] - 1
        g = math.isqrt(n)
        if g * g != n:
            raise ValueError(f"mean_attention_distance: block {layer} has {n} patch tokens, not a square grid")
        rows, cols = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
        centres = torch.stack([rows.flatten(), cols.flatten()], dim=1).to(a) * patch_size  # (N, 2)
        dist = torch.cdist(centres, centres)  # (N, N) pixels between patch centres
        patches = a[:, :, 1:, 1:].float()  # (B, h, N, N): patch queries, patch keys
        patches = patches / patches.sum(dim=-1, keepdim=True)
        per_query = (patches * dist).sum(dim=-1)  # (B, h, N)
        distances.append(per_query.mean(dim=(0, 2)))  # (h,)
    return torch.stack(distances)  # (L, h)
