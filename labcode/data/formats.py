"""CIFAR-10 and Fashion-MNIST: download on first use, parse the official formats.

CIFAR-10 (Krizhevsky, "Learning multiple layers of features from tiny images", 2009):
60,000 colour images 32x32 in 10 classes, distributed as a tar.gz of Python pickles
(`data_batch_1` .. `data_batch_5`, `test_batch`), each a dict with b"data", a uint8
array (10000, 3072) holding the red, green and blue planes row by row, and b"labels".

Fashion-MNIST (Xiao, Rasul & Vollgraf, arXiv 1708.07747, 2017): 70,000 grey images
28x28 of clothing in 10 classes, as four gzipped IDX files: a big-endian header (two
zero bytes, a type code, the number of dimensions, then each dimension as int32)
followed by the raw uint8 values.

Both loaders return the format `load_digits` returns: uint8 images (N, C, H, W) and int64
labels (N,). Files are verified against the official MD5 checksums. The base URLs can be
changed with a parameter or the environment variables LABCODE_CIFAR10_URL and
LABCODE_FASHION_MNIST_URL (for mirrors, and for the tests' local server). A CIFAR-10
mirror that serves a different archive (the Colab rehearsal's small one) names its MD5 in
LABCODE_CIFAR10_MD5; that variable is refused without a mirror, so the official archive
is always checked against the official checksum.
"""
from __future__ import annotations

import gzip
import os
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import torch

from labcode.data.download import cache_dir, fetch
from labcode.data.offline import ImageSet, check_split

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/"
CIFAR10_FILES = {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _base_url(base_url: str | None, env: str, default: str) -> str:
    url = base_url or os.environ.get(env) or default
    return url if url.endswith("/") else url + "/"


def _mirror_md5(base: str, official: str, env: str, md5: str) -> str:
    """The MD5 to expect from `base`: `md5`, or the one in `env` when `base` is a mirror."""
    override = os.environ.get(env)
    if not override:
        return md5
    if base.rstrip("/") == official.rstrip("/"):
        raise ValueError(f"{env}={override!r} applies only to a mirror, but the URL is the "
                         f"official {official}: its archive must have md5 {md5}. "
                         f"Unset {env}, or set the mirror's URL too.")
    if not re.fullmatch(r"[0-9a-fA-F]{32}", override):
        raise ValueError(f"{env}: expected an MD5 of 32 hex digits, got {override!r}")
    return override.lower()


# ---------------------------------------------------------------- CIFAR-10

def load_cifar10(split: str = "train", root: str | os.PathLike | None = None, *,
                 base_url: str | None = None, progress: bool = True) -> ImageSet:
    """CIFAR-10: 50,000 training or 10,000 test images, uint8 (N, 3, 32, 32).

    Downloads the official 163 MB archive on first use (see `labcode.data.download`).

    Args:
        split: "train" or "test".
        root: cache folder; default $LABCODE_DATA or ~/.cache/labcode.
        base_url: where the archive lives; default CIFAR10_URL or $LABCODE_CIFAR10_URL.
        progress: show a download progress bar.
    """
    check_split(split, "load_cifar10")
    (name, md5), = CIFAR10_FILES.items()
    base = _base_url(base_url, "LABCODE_CIFAR10_URL", CIFAR10_URL)
    md5 = _mirror_md5(base, CIFAR10_URL, "LABCODE_CIFAR10_MD5", md5)
    archive = fetch(base + name, cache_dir(root) / "cifar10", md5, progress=progress)
    wanted = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = read_cifar_archive(archive, wanted)
    return ImageSet(images, labels, CIFAR10_CLASSES)


def read_cifar_archive(path: str | os.PathLike, batches: list[str]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Read the named pickle batches from a CIFAR-10 python tar.gz, in the given order."""
    found: dict[str, dict] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if member.isfile() and name in batches:
                found[name] = _SafeUnpickler(tar.extractfile(member)).load()
    missing = [b for b in batches if b not in found]
    if missing:
        raise ValueError(f"CIFAR-10 archive {path}: missing batches {missing}")
    data = np.concatenate([np.asarray(found[b][b"data"], dtype=np.uint8) for b in batches])
    labels = np.concatenate([np.asarray(found[b][b"labels"], dtype=np.int64) for b in batches])
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32))  # (N, 3072) -> (N, 3, 32, 32)
    return images, torch.from_numpy(labels)


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a pickle can run code otherwise."""

    _allowed = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how Python 3 writes a byte string in protocol 2
    }

    def __init__(self, file):
        super().__init__(file, encoding="bytes")

    def find_class(self, module: str, name: str):
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"CIFAR-10 batch refers to {module}.{name}: not allowed")


# ---------------------------------------------------------------- Fashion-MNIST

def load_fashion_mnist(split: str = "train", root: str | os.PathLike | None = None, *,
                       base_url: str | None = None, progress: bool = True) -> ImageSet:
    """Fashion-MNIST: 60,000 training or 10,000 test images, uint8 (N, 1, 28, 28).

    Downloads the four official gzipped IDX files (30 MB) on first use.

    Args:
        split: "train" or "test".
        root: cache folder; default $LABCODE_DATA or ~/.cache/labcode.
        base_url: where the files live; default FASHION_MNIST_URL or
            $LABCODE_FASHION_MNIST_URL.
        progress: show a download progress bar.
    """
    check_split(split, "load_fashion_mnist")
    prefix = "train" if split == "train" else "t10k"
    base = _base_url(base_url, "LABCODE_FASHION_MNIST_URL", FASHION_MNIST_URL)
    folder = cache_dir(root) / "fashion_mnist"
    paths = {}
    for kind in ("images-idx3", "labels-idx1"):
        name = f"{prefix}-{kind}-ubyte.gz"
        paths[kind] = fetch(base + name, folder, FASHION_MNIST_FILES[name], progress=progress)
    images = read_idx(paths["images-idx3"])
    labels = read_idx(paths["labels-idx1"])
    if images.dim() != 3 or labels.dim() != 1 or len(images) != len(labels):
        raise ValueError(f"Fashion-MNIST: expected images (N, H, W) and labels (N,), "
                         f"got {tuple(images.shape)} and {tuple(labels.shape)}")
    return ImageSet(images.unsqueeze(1), labels.long(), FASHION_MNIST_CLASSES)


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read a (gzipped) IDX file of unsigned bytes into a uint8 tensor of its shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (the first two bytes must be zero)")
    type_code, ndim = raw[2], raw[3]
    if type_code != 0x08:
        raise ValueError(f"{path}: expected IDX type 0x08 (unsigned byte), got {type_code:#04x}")
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(shape)) if shape else 1
    if len(raw) - header != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes), "
                         f"but {len(raw) - header} bytes follow")
    values = np.frombuffer(raw, dtype=np.uint8, offset=header)
    return torch.from_numpy(values.reshape(shape).copy())
