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

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0) -> None:
        """
        Args:
            kernel_size: window size, an int or (kh, kw).
            stride: step between windows; defaults to kernel_size.
            padding: pixels of minus infinity on each side, at most half the window.
        """
        validate.pool_arguments("MaxPool2d", kernel_size, stride, padding)
        super().__init__(kernel_size, stride, padding)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            validate.pool_input("MaxPool2d", input, self.kernel_size, self.stride, self.padding)
        if self.scratch:
            return LF.max_pool2d(input, self.kernel_size, self.stride, self.padding, check=False)
        return super().forward(input)


class AvgPool2d(nn.AvgPool2d, Switchable, ChecksInput):
    """2-D average pooling, torch's `nn.AvgPool2d` plus the backend switch."""

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0) -> None:
        """
        Args:
            kernel_size: window size, an int or (kh, kw).
            stride: step between windows; defaults to kernel_size.
            padding: zeros on each side (counted in the mean), at most half the window.
        """
        validate.pool_arguments("AvgPool2d", kernel_size, stride, padding)
        super().__init__(kernel_size, stride, padding)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            validate.pool_input("AvgPool2d", input, self.kernel_size, self.stride, self.padding)
        if self.scratch:
            return LF.avg_pool2d(input, self.kernel_size, self.stride, self.padding, check=False)
        return super().forward(input)
