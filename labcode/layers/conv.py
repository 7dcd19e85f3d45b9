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
from labcode import validate
from labcode.functional.sizes import conv_padding, padding_amount
from labcode.layers.backend import Switchable
from labcode.validate import ChecksInput, IntPair


class Conv2d(nn.Conv2d, Switchable, ChecksInput):
    """A 2-D convolution, torch's `nn.Conv2d` plus the backend switch.

    It checks its input unless a model has switched that off (`check_input`, see
    `labcode.validate.trust_inner_layers`).
    """

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
        fn = "Conv2d"
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            validate.positive_int(fn, name, value)
        kh, kw = validate.pair(fn, "kernel_size", kernel_size, minimum=1)
        validate.pair(fn, "stride", stride, minimum=1)
        dh, dw = validate.pair(fn, "dilation", dilation, minimum=1)
        if isinstance(padding, str):
            validate.padding_mode(fn, padding, stride)
        else:
            validate.pair(fn, "padding", padding, minimum=0)
        if padding == "full":
            # Symmetric, so plain numbers say the same to torch and to labcode.
            padding = (padding_amount("full", kh, dh)[0], padding_amount("full", kw, dw)[0])
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2d: groups={groups} must divide in_channels ({in_channels}) "
                f"and out_channels ({out_channels})"
            )
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            validate.image_batch("Conv2d", input, self.in_channels)
            pads = conv_padding("Conv2d", self.padding, self.kernel_size, self.dilation, self.stride)
            validate.kernel_fits("Conv2d", input, self.kernel_size, self.dilation, pads)
        return self.convolve(input)

    def convolve(self, input: torch.Tensor) -> torch.Tensor:
        """The convolution alone, on an input already checked."""
        if self.scratch:
            return LF.conv2d(input, self.weight, self.bias, self.stride, self.padding,
                             self.dilation, self.groups, check=False)
        return super().forward(input)


class Linear(nn.Linear, Switchable, ChecksInput):
    """A fully connected layer, torch's `nn.Linear` plus the backend switch.

    It checks its input unless a model has switched that off (`check_input`).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        """
        Args:
            in_features: size of each input's last dimension.
            out_features: size of each output's last dimension.
            bias: add a learned bias.
        """
        validate.positive_int("Linear", "in_features", in_features)
        validate.positive_int("Linear", "out_features", out_features)
        super().__init__(in_features, out_features, bias)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            validate.features("Linear", input, self.in_features)
        if self.scratch:
            return LF.linear(input, self.weight, self.bias, check=False)
        return super().forward(input)
