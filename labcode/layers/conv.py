"""Convolution and fully connected layers that can compute with labcode's own kernels.

`Conv2d` and `Linear` are torch's `nn.Conv2d` and `nn.Linear` (same parameters, same
initialisation, same state-dict keys, so torchvision weights load unchanged) with two
additions: a backend switch (`labcode.layers.set_backend(model, "scratch")` makes
them compute with `labcode.functional.conv2d` / `linear`), and input checks that name
the expected and the actual shape. `Conv2d` also accepts padding="full" (d(k - 1) on
each side, Dumoulin & Visin, arXiv 1603.07285), which torch's module does not.
"""
from __future__ import annotations

import torch
from torch import nn

import labcode.functional as LF
from labcode.functional._checks import IntPair, pair
from labcode.functional.sizes import PADDING_MODES, padding_amount
from labcode.layers.backend import Switchable


class Conv2d(nn.Conv2d, Switchable):
    """A 2-D convolution, torch's `nn.Conv2d` plus the backend switch."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair | str = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        """
        Args:
            in_channels: channels C_in of the input.
            out_channels: channels C_out of the output (number of kernels).
            kernel_size: an int or (kh, kw).
            stride: an int or (sh, sw).
            padding: an int, (ph, pw), "valid", "same" (stride 1) or "full".
            dilation: an int or (dh, dw).
            groups: split the channels into this many independent convolutions.
            bias: add a learned bias per output channel.
        """
        if isinstance(padding, str) and padding not in PADDING_MODES:
            raise ValueError(f"Conv2d: padding must be an int, a pair or one of {PADDING_MODES}, got {padding!r}")
        if padding == "full":
            # Symmetric, so plain numbers say the same to torch and to labcode.
            kh, kw = pair("Conv2d", "kernel_size", kernel_size, minimum=1)
            dh, dw = pair("Conv2d", "dilation", dilation, minimum=1)
            padding = (padding_amount("full", kh, dh)[0], padding_amount("full", kw, dw)[0])
        if padding == "same" and pair("Conv2d", "stride", stride, minimum=1) != (1, 1):
            raise ValueError(f"Conv2d: padding='same' needs stride 1 (as in torch), got stride {stride}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Conv2d: {name} must be a positive int, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2d: groups={groups} must divide in_channels ({in_channels}) "
                f"and out_channels ({out_channels})"
            )
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        check_image_batch("Conv2d", input, self.in_channels)
        if self.scratch:
            return LF.conv2d(input, self.weight, self.bias, self.stride, self.padding,
                             self.dilation, self.groups)
        return super().forward(input)


class Linear(nn.Linear, Switchable):
    """A fully connected layer, torch's `nn.Linear` plus the backend switch."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        """
        Args:
            in_features: size of each input's last dimension.
            out_features: size of each output's last dimension.
            bias: add a learned bias.
        """
        super().__init__(in_features, out_features, bias)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"Linear: input must be a tensor, got {type(input).__name__}")
        if input.dim() < 1 or input.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear: expected input of shape (..., {self.in_features}), "
                f"got shape {tuple(input.shape)}"
            )
        if self.scratch:
            return LF.linear(input, self.weight, self.bias)
        return super().forward(input)


def check_image_batch(layer: str, input: object, channels: int | None = None) -> None:
    """Raise unless `input` is an (N, C, H, W) tensor, with `channels` channels if given."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{layer}: input must be a tensor, got {type(input).__name__}")
    if input.dim() != 4:
        raise ValueError(f"{layer}: input must be 4-D (N, C, H, W), got shape {tuple(input.shape)}")
    if channels is not None and input.shape[1] != channels:
        raise ValueError(
            f"{layer}: expected input with {channels} channels (N, {channels}, H, W), "
            f"got {input.shape[1]} channels (shape {tuple(input.shape)})"
        )
