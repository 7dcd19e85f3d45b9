"""The switch between labcode's from-scratch kernels and torch's built-in ones.

Every labcode layer that has a from-scratch kernel (convolution, pooling, linear,
attention) inherits `Switchable`. It computes with torch's kernels by default, the
fast path for training; `set_backend(model, "scratch")` makes every such layer in a
model compute with `labcode.functional` instead, so a student's own layers can power a
real AlexNet. The weights are the same either way, so are the outputs (within float
tolerance): the tests check it for every model.
"""
from __future__ import annotations

from torch import nn

BACKENDS = ("torch", "scratch")


class Switchable:
    """Mixin for layers that can compute with either backend."""

    backend: str = "torch"

    @property
    def scratch(self) -> bool:
        return self.backend == "scratch"


def set_backend(model: nn.Module, backend: str) -> nn.Module:
    """Make every switchable layer in `model` compute with `backend`.

    Args:
        model: any module; layers that are not labcode's are left alone.
        backend: "torch" (built-in kernels) or "scratch" (labcode.functional).

    Returns:
        The same model, for chaining.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for module in model.modules():
        if isinstance(module, Switchable):
            module.backend = backend
    return model
