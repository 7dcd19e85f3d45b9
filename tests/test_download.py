"""CIFAR-10 and Fashion-MNIST loaders against a local HTTP server serving tiny archives
in the real formats: good download, corrupt file, cut transfer, 404, cache reuse."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import socket
import struct
import tarfile
import threading

import numpy as np
import pytest
import torch

from labcode.data import DownloadError, formats, load_cifar10, load_fashion_mnist, read_idx

CIFAR_NAME = "cifar-10-python.tar.gz"


def cifar_archive(seed=0):
    """A CIFAR-10 python tarball with 2 images per training batch and 3 test images."""
    rng = np.random.default_rng(seed)
    images = {}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for name in names:
            n = 3 if name == "test_batch" else 2
            img = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
            labels = rng.integers(0, 10, n).tolist()
            images[name] = (img, labels)
            # The documented layout: 1024 red values row by row, then green, then blue.
            rows = np.concatenate([img[:, c].reshape(n, 1024) for c in range(3)], axis=1)
            batch = {b"batch_label": name.encode(), b"labels": labels, b"data": rows,
                     b"filenames": [f"{name}_{i}.png".encode() for i in range(n)]}
            raw = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buffer.getvalue(), images


def idx_gz(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


class Server:
    """Serves `files` by name; `cut` names are sent half-way with a full Content-Length."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.requests: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                owner.requests.append(name)
                if name not in owner.files:
                    self.send_error(404, "Not Found")
                    return
                body = owner.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if name in owner.cut:
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def cifar(server, monkeypatch):
    raw, images = cifar_archive()
    server.files[CIFAR_NAME] = raw
    monkeypatch.setitem(formats.CIFAR10_FILES, CIFAR_NAME, hashlib.md5(raw).hexdigest())
    return images


def test_cifar10_download_parse_and_cache(server, cifar, tmp_path):
    train = load_cifar10("train", root=tmp_path, base_url=server.url, progress=False)
    expected = np.concatenate([cifar[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = sum((cifar[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert train.images.dtype == torch.uint8 and train.images.shape == (10, 3, 32, 32)
    assert torch.equal(train.images, torch.from_numpy(expected))
    assert train.labels.tolist() == labels and train.labels.dtype == torch.int64
    assert train.classes[0] == "airplane" and len(train.classes) == 10
    assert server.requests == [CIFAR_NAME]
    test = load_cifar10("test", root=tmp_path, base_url=server.url, progress=False)
    assert torch.equal(test.images, torch.from_numpy(cifar["test_batch"][0]))
    assert server.requests == [CIFAR_NAME]              # the cache served the second call
    assert sorted(p.name for p in (tmp_path / "cifar10").iterdir()) == [CIFAR_NAME]


def test_environment_variables_choose_url_and_folder(server, cifar, tmp_path, monkeypatch):
    monkeypatch.setenv("LABCODE_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("LABCODE_CIFAR10_URL", server.url)
    data = load_cifar10("test", progress=False)
    assert len(data) == 3
    assert (tmp_path / "cache" / "cifar10" / CIFAR_NAME).exists()


def test_corrupt_download_fails_and_leaves_nothing(server, cifar, tmp_path):
    good = server.files[CIFAR_NAME]
    server.files[CIFAR_NAME] = good[:-10] + b"0123456789"
    with pytest.raises(DownloadError) as info:
        load_cifar10("train", root=tmp_path, base_url=server.url, progress=False)
    message = str(info.value)
    assert formats.CIFAR10_FILES[CIFAR_NAME] in message              # expected checksum
    assert hashlib.md5(server.files[CIFAR_NAME]).hexdigest() in message  # actual one
    assert server.url + CIFAR_NAME in message and "load_digits" in message
    assert list((tmp_path / "cifar10").iterdir()) == []


def test_cut_transfer_leaves_nothing(server, cifar, tmp_path):
    server.cut.add(CIFAR_NAME)
    with pytest.raises(DownloadError, match="cut off") as info:
        load_cifar10("train", root=tmp_path, base_url=server.url, progress=False)
    assert "load_digits" in str(info.value)
    assert list((tmp_path / "cifar10").iterdir()) == []
    server.cut.clear()                                  # the next try succeeds
    assert len(load_cifar10("train", root=tmp_path, base_url=server.url, progress=False)) == 10


def test_http_404_names_url_and_status(server, tmp_path):
    with pytest.raises(DownloadError) as info:
        load_cifar10("train", root=tmp_path, base_url=server.url, progress=False)
    assert "HTTP status 404" in str(info.value) and server.url + CIFAR_NAME in str(info.value)
    assert "labcode.data.load_digits" in str(info.value)


def test_unreachable_server_says_offline(tmp_path):
    with socket.socket() as s:                          # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="offline"):
        load_fashion_mnist("test", root=tmp_path, base_url=f"http://127.0.0.1:{port}/",
                           progress=False)


@pytest.fixture
def fashion(server, monkeypatch):
    rng = np.random.default_rng(1)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (7, 28, 28)),
              "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 7),
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (4, 28, 28)),
              "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 4)}
    for name, array in arrays.items():
        server.files[name] = idx_gz(array)
        monkeypatch.setitem(formats.FASHION_MNIST_FILES, name,
                            hashlib.md5(server.files[name]).hexdigest())
    return arrays


def test_fashion_mnist_download_parse_and_cache(server, fashion, tmp_path):
    for split, prefix in (("train", "train"), ("test", "t10k")):
        data = load_fashion_mnist(split, root=tmp_path, base_url=server.url, progress=False)
        images = fashion[f"{prefix}-images-idx3-ubyte.gz"]
        assert data.images.shape == (len(images), 1, 28, 28) and data.images.dtype == torch.uint8
        assert torch.equal(data.images[:, 0], torch.from_numpy(images.astype(np.uint8)))
        assert data.labels.tolist() == fashion[f"{prefix}-labels-idx1-ubyte.gz"].tolist()
    assert len(server.requests) == 4
    load_fashion_mnist("train", root=tmp_path, base_url=server.url, progress=False)
    assert len(server.requests) == 4                    # all from the cache


def test_read_idx_agrees_with_torchvision(tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file
    rng = np.random.default_rng(2)
    images, labels = rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 10, 5)
    for name, array, reference in (("img", images, read_image_file),
                                   ("lab", labels, read_label_file)):
        raw = gzip.decompress(idx_gz(array))
        (tmp_path / name).write_bytes(raw)
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(raw))
        assert torch.equal(read_idx(tmp_path / f"{name}.gz"), reference(str(tmp_path / name)).to(torch.uint8))


def test_read_idx_rejects_a_truncated_file(tmp_path):
    raw = gzip.decompress(idx_gz(np.zeros((3, 4, 4))))
    (tmp_path / "bad").write_bytes(raw[:-5])
    with pytest.raises(ValueError, match=r"header says shape \(3, 4, 4\)"):
        read_idx(tmp_path / "bad")


def test_split_is_checked():
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'val'"):
        load_cifar10("val")
