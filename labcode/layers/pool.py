"""Pooling layers that can compute with labcode's own kernels.

`MaxPool2d` and `AvgPool2d` are torch's modules (AlexNet's overlapping max pool is
`MaxPool2d(3, 2)`, Krizhevsky et al. 2012) plus the backend switch: with
`set_backend(model, "scratch")` they compute with `labcode.functional.max_pool2d` /
`avg_pool2d`. Average pooling counts padding as zeros, torch's default.
"""
from __future__ import annotations

import torch
from torch import nn

from labcode import validate
from labcode.functional.pool import avg_pool2d_unchecked, max_pool2d_unchecked
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
            validate.image_batch("MaxPool2d", input)
        if self.scratch:
            return _scratch_pool(self, "MaxPool2d", max_pool2d_unchecked, input)
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
            validate.image_batch("AvgPool2d", input)
        if self.scratch:
            return _scratch_pool(self, "AvgPool2d", avg_pool2d_unchecked, input)
        return super().forward(input)


def _scratch_pool(layer: nn.Module, name: str, pool, input: torch.Tensor) -> torch.Tensor:
    """Pool with labcode's kernel; a layer that checks its input also checks the window fits."""
    kernel, stride, padding = validate.pool_arguments(name, layer.kernel_size, layer.stride, layer.padding)
    if layer.check_input:
        padded = (input.shape[2] + 2 * padding[0], input.shape[3] + 2 * padding[1])
        validate.window_fits(name, "the pooling window", kernel, padded)
    return pool(input, kernel, stride, padding)
