"""The fully connected layer and the ReLU, written from scratch.

linear: y = x W^T + b, one matrix product over every leading dimension (the
classifier of AlexNet, the MLPs and projections of the Vision Transformer).
relu: max(0, x) (Nair & Hinton 2010), the non-linearity AlexNet made standard
(Krizhevsky et al. 2012, fig. 1: six times faster to train than tanh). Its gradient
is 1 where the output is positive and 0 elsewhere, at 0 included, as in torch.
"""
from __future__ import annotations

import torch

from labcode.functional._checks import check_floating, check_tensor


def linear(
    input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """y = input @ weight^T + bias.

    Args:
        input: (..., in_features).
        weight: (out_features, in_features).
        bias: (out_features,) or None.

    Returns:
        (..., out_features).
    """
    fn = "linear"
    check_tensor(fn, "input", input)
    check_tensor(fn, "weight", weight)
    check_tensor(fn, "bias", bias, optional=True)
    check_floating(fn, "input", input)
    if weight.dim() != 2:
        raise ValueError(
            f"{fn}: weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}"
        )
    if input.dim() < 1 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{fn}: input's last dimension must be in_features = {weight.shape[1]} "
            f"(weight shape {tuple(weight.shape)}), got input shape {tuple(input.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{fn}: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    if bias is None:
        return input @ weight.t()
    if input.dim() == 2:
        return torch.addmm(bias, input, weight.t())  # (B, out), bias added inside the product
    out = torch.addmm(bias, input.reshape(-1, weight.shape[1]), weight.t())  # (B*..., out)
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
    check_tensor("relu", "input", input)
    return _ReLU.apply(input)
