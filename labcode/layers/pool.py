"""Pooling layers that can compute with labcode's own kernels.

`MaxPool2d` and `AvgPool2d` are torch's modules (AlexNet's overlapping max pool is
`MaxPool2d(3, 2)`, Krizhevsky et al. 2012) plus the backend switch: with
`set_backend(model, "scratch")` they compute with `labcode.functional.max_pool2d` /
`avg_pool2d`. Average pooling counts padding as zeros, torch's default.
"""
from __future__ import annotations

import torch
from torch import nn

import labcode.functional as LF
from labcode import validate
from labcode.layers.backend import Switchable
from labcode.validate import ChecksInput, IntPair


class MaxPool2d(nn.MaxPool2d, Switchable, ChecksInput):
    """2-D max pooling, torch's `nn.MaxPool2d` plus the backend switch."""

    def __init__(
        self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
        dilation: IntPair = 1, return_indices: bool = False, ceil_mode: bool = False,
    ) -> None:
        """
        Args:
            kernel_size: window size, an int or (kh, kw).
            stride: step between windows; defaults to kernel_size.
            padding: pixels of minus infinity on each side, at most half the window.
            dilation: spacing between the window's taps.
            return_indices: also return where each maximum came from.
            ceil_mode: round the output size up (a last partial window counts).
        """
        validate.pool_arguments("MaxPool2d", kernel_size, stride, padding)
        validate.pair("MaxPool2d", "dilation", dilation, minimum=1)
        validate.flag("MaxPool2d", "return_indices", return_indices)
        validate.flag("MaxPool2d", "ceil_mode", ceil_mode)
        super().__init__(kernel_size, stride, padding, dilation, return_indices, ceil_mode)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            validate.pool_input("MaxPool2d", input, self.kernel_size, self.stride, self.padding,
                                self.dilation, self.ceil_mode)
        if self.scratch:
            return LF.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                                 self.ceil_mode, self.return_indices, check=False)
        return super().forward(input)


class AvgPool2d(nn.AvgPool2d, Switchable, ChecksInput):
    """2-D average pooling, torch's `nn.AvgPool2d` plus the backend switch."""

    def __init__(
        self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
        ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: int | None = None,
    ) -> None:
        """
        Args:
            kernel_size: window size, an int or (kh, kw).
            stride: step between windows; defaults to kernel_size.
            padding: zeros on each side, at most half the window.
            ceil_mode: round the output size up (a last partial window counts).
            count_include_pad: count the padding in the mean (True) or only input pixels.
            divisor_override: divide every window's sum by this instead.
        """
        validate.pool_arguments("AvgPool2d", kernel_size, stride, padding)
        validate.flag("AvgPool2d", "ceil_mode", ceil_mode)
        validate.flag("AvgPool2d", "count_include_pad", count_include_pad)
        if divisor_override is not None:
            validate.positive_int("AvgPool2d", "divisor_override", divisor_override)
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            validate.pool_input("AvgPool2d", input, self.kernel_size, self.stride, self.padding,
                                ceil_mode=self.ceil_mode)
        if self.scratch:
            return LF.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                                 self.count_include_pad, self.divisor_override, check=False)
        return super().forward(input)
