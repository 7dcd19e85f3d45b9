"""labcode: the code behind the CNN-to-Vision-Transformer course book.

Layers written from scratch and proven equal to torch's (`labcode.functional`,
`labcode.layers`), AlexNet, EfficientNetV2 and the Vision Transformer
(`labcode.models`, weight-compatible with torchvision), data, training, exercise
checks and grading tools. Submodules are imported on first use so that
`import labcode` stays fast.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = {
    "functional", "layers", "models", "device", "data", "train", "viz",
    "checks", "flops", "widgets", "colab", "assign",
    "grading", "book", "figures", "distributed", "checkpoint", "validate",
    "experiments", "progressive", "receptive_field", "classic",
}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"labcode.{name}")
    if name == "set_backend":
        from labcode.layers.backend import set_backend
        return set_backend
    raise AttributeError(f"module 'labcode' has no attribute {name!r}")


def quick_mode() -> bool:
    """True when LABCODE_QUICK=1: notebooks then use small subsets and few steps."""
    import os

    return os.environ.get("LABCODE_QUICK", "0") == "1"
