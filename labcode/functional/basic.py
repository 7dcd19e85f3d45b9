"""The fully connected layer and the ReLU, written from scratch.

linear: y = x W^T + b, one matrix product over every leading dimension (the
classifier of AlexNet, the MLPs and projections of the Vision Transformer).
relu: max(0, x) (Nair & Hinton 2010), the non-linearity AlexNet made standard
(Krizhevsky et al. 2012, fig. 1: six times faster to train than tanh). Its gradient
is 1 where the output is positive and 0 elsewhere, at 0 included, as in torch.
"""
from __future__ import annotations

import math

import torch

from labcode import validate
from labcode.functional.conv import autocast_dtype


def linear(
    input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, check: bool = True
) -> torch.Tensor:
    """y = input @ weight^T + bias.

    Outside autocast input, weight and bias must share one dtype, as in torch (a TypeError
    names them, checked even with check=False, as in conv2d); under autocast they may differ.

    Args:
        input: (..., in_features).
        weight: (out_features, in_features).
        bias: (out_features,) or None.
        check: check the arguments first; a layer that has checked its input passes False.

    Returns:
        (..., out_features).
    """
    if check:
        validate.linear_arguments("linear", input, weight, bias)
    if autocast_dtype(input.device.type) is None:  # outside autocast torch promotes nothing
        validate.same_dtype("linear", input=input, weight=weight, bias=bias)
    if bias is None:
        return input @ weight.t()
    if input.dim() == 2:
        return torch.addmm(bias, input, weight.t())  # (B, out), bias added inside the product
    rows = math.prod(input.shape[:-1])  # not -1: that is ambiguous for an empty input
    out = torch.addmm(bias, input.reshape(rows, weight.shape[1]), weight.t())  # (B*..., out)
    return out.view(*input.shape[:-1], weight.shape[0])


class _ReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out = x.clamp_min(0)  # NaN stays NaN, as in torch
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (out,) = ctx.saved_tensors
        return grad_out.masked_fill(out <= 0, 0.0)  # NaN passes the gradient, as in torch


def relu(input: torch.Tensor) -> torch.Tensor:
    """max(0, input), element-wise; the gradient is 0 at 0, as in torch."""
    validate.tensor("relu", "input", input)
    return _ReLU.apply(input)
