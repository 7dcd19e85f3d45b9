"""Where computation runs, and in which precision, decided in one place.

`pick_device()` prefers CUDA, then Apple's MPS, then the CPU. `amp_dtype(device)`
chooses the mixed-precision type: bfloat16 on GPUs that support it (Ampere and
newer, Colab's A100 and L4), float16 with a gradient scaler on older GPUs (Colab's
T4), and none on a CPU. Model code never names a device: it follows its input.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """The best device available: CUDA, then MPS, then CPU.

    Args:
        prefer: force a device ("cpu", "cuda", "cuda:1", "mps"); None picks.
    """
    if prefer is not None:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {prefer!r} asked for, but torch sees no CUDA GPU")
        if device.type == "mps" and not _mps_available():
            raise ValueError(f"device {prefer!r} asked for, but MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def amp_dtype(device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for `device`, or None for full float32."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, _ = torch.cuda.get_device_capability(index)
        return torch.bfloat16 if major >= 8 else torch.float16
    if device.type == "mps":
        return torch.float16
    return None


@dataclass
class Precision:
    """Everything a training loop needs to know about mixed precision."""

    device: torch.device
    dtype: torch.dtype | None

    @property
    def needs_scaler(self) -> bool:
        # float16 has a narrow exponent range: small gradients underflow to zero
        # unless the loss is scaled up first. bfloat16 has float32's range.
        return self.dtype is torch.float16 and self.device.type == "cuda"

    def autocast(self):
        """A context that runs the forward pass in the chosen dtype."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def scaler(self) -> "torch.amp.GradScaler":
        """A gradient scaler, active only where float16 needs one."""
        return torch.amp.GradScaler(self.device.type, enabled=self.needs_scaler)


def precision(device: torch.device | str | None = None, mixed: bool = True) -> Precision:
    """The device and mixed-precision choice for training.

    Args:
        device: where to train; None picks with `pick_device()`.
        mixed: False turns mixed precision off everywhere.
    """
    device = pick_device() if device is None else torch.device(device)
    return Precision(device=device, dtype=amp_dtype(device) if mixed else None)


def describe(device: torch.device | str | None = None) -> str:
    """One line for a notebook: which device and precision a run will use."""
    p = precision(device)
    name = p.device.type
    if p.device.type == "cuda":
        name = f"cuda ({torch.cuda.get_device_name(p.device)})"
    dtype = "float32" if p.dtype is None else str(p.dtype).replace("torch.", "")
    return f"device: {name}, mixed precision: {dtype}"
