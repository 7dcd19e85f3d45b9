"""Input checks shared by labcode's functional ops.

Each check raises a TypeError or ValueError whose message starts with the name of
the public function and names what was expected and what came, so that a student
sees "conv2d: input must be 4-D (N, C, H, W), got shape (3, 32, 32)" rather than an
error from deep inside torch.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

IntPair = int | tuple[int, int]


def check_tensor(fn: str, name: str, value: object, optional: bool = False) -> None:
    """Raise TypeError unless `value` is a tensor (or None when `optional`)."""
    if value is None and optional:
        return
    if not isinstance(value, torch.Tensor):
        kind = "a tensor or None" if optional else "a tensor"
        raise TypeError(f"{fn}: {name} must be {kind}, got {type(value).__name__}")


def check_floating(fn: str, name: str, value: torch.Tensor) -> None:
    if not (value.is_floating_point() or value.is_complex()):
        raise TypeError(f"{fn}: {name} must have a floating-point dtype, got {value.dtype}")


def check_rank(fn: str, name: str, value: torch.Tensor, rank: int, layout: str) -> None:
    if value.dim() != rank:
        raise ValueError(
            f"{fn}: {name} must be {rank}-D {layout}, got shape {tuple(value.shape)}"
        )


def pair(fn: str, name: str, value: object, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints as (h, w), each at least `minimum`."""
    if isinstance(value, bool):
        raise TypeError(f"{fn}: {name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        values = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        values = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{fn}: {name} must be an int or a pair of ints, got {value!r}")
    if min(values) < minimum:
        raise ValueError(f"{fn}: {name} must be at least {minimum}, got {value!r}")
    return values


def check_window_fits(
    fn: str, what: str, window: tuple[int, int], size: tuple[int, int]
) -> None:
    """Raise unless a (dilated) window of `window` fits into the padded input `size`."""
    if window[0] > size[0] or window[1] > size[1]:
        raise ValueError(
            f"{fn}: {what} {window} is larger than the padded input {size}"
        )


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast would use on `device_type`, or None when it is off."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
        return torch.get_autocast_dtype(device_type) if enabled else None
    except (TypeError, AttributeError):  # torch < 2.4
        if device_type == "cuda" and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
        if device_type == "cpu" and torch.is_autocast_cpu_enabled():
            return torch.get_autocast_cpu_dtype()
        return None


@contextlib.contextmanager
def no_autocast(device_type: str) -> Iterator[None]:
    """Run the body in the dtypes we chose ourselves."""
    with torch.autocast(device_type, enabled=False):
        yield
