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
from labcode.functional._checks import IntPair, pair
from labcode.layers.backend import Switchable
from labcode.layers.conv import check_image_batch


class MaxPool2d(nn.MaxPool2d, Switchable):
    """2-D max pooling, torch's `nn.MaxPool2d` plus the backend switch."""

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0) -> None:
        """
        Args:
            kernel_size: window size, an int or (kh, kw).
            stride: step between windows; defaults to kernel_size.
            padding: pixels of minus infinity on each side, at most half the window.
        """
        _check_pool("MaxPool2d", kernel_size, stride, padding)
        super().__init__(kernel_size, stride, padding)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        check_image_batch("MaxPool2d", input)
        if self.scratch:
            return LF.max_pool2d(input, self.kernel_size, self.stride, self.padding)
        return super().forward(input)


class AvgPool2d(nn.AvgPool2d, Switchable):
    """2-D average pooling, torch's `nn.AvgPool2d` plus the backend switch."""

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0) -> None:
        """
        Args:
            kernel_size: window size, an int or (kh, kw).
            stride: step between windows; defaults to kernel_size.
            padding: zeros on each side (counted in the mean), at most half the window.
        """
        _check_pool("AvgPool2d", kernel_size, stride, padding)
        super().__init__(kernel_size, stride, padding)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        check_image_batch("AvgPool2d", input)
        if self.scratch:
            return LF.avg_pool2d(input, self.kernel_size, self.stride, self.padding)
        return super().forward(input)


def _check_pool(layer: str, kernel_size, stride, padding) -> None:
    kernel = pair(layer, "kernel_size", kernel_size, minimum=1)
    if stride is not None:
        pair(layer, "stride", stride, minimum=1)
    pad = pair(layer, "padding", padding, minimum=0)
    if pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:
        raise ValueError(
            f"{layer}: padding must be at most half the kernel size "
            f"({kernel[0] // 2}, {kernel[1] // 2}), got {padding}"
        )
