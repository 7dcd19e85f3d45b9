"""CIFAR-10 and Fashion-MNIST loaders against a local HTTP server serving tiny archives
in the real formats: good download, corrupt file, cut transfer, 404, cache reuse; and
`fetch` naming each failure for what it is: disk full, a folder that cannot be written,
a cache path through a regular file, a file larger than announced, a server too slow
for the deadline; two threads downloading into one cache."""
from __future__ import annotations

import errno
import gzip
import hashlib
import http.server
import io
import os
import pickle
import socket
import struct
import tarfile
import threading
import types
import time

import numpy as np
import pytest
import torch

from labcode.data import DownloadError, formats, load_cifar10, load_fashion_mnist, read_idx
from labcode.data import download
from labcode.data.download import CacheError, fetch, part_name

CIFAR_NAME = "cifar-10-python.tar.gz"
TRICKLE_BYTES = 16                  # 8 s of trickle at most: every server stops


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
    """Serves `files` by name; `cut` names are sent half-way with a full Content-Length;
    `unsized` names are sent without Content-Length (the end is the closed connection);
    `announce` overrides the Content-Length of a name; `trickle` names are sent one byte
    every 0.5 s, at most TRICKLE_BYTES of them; `meet` names wait for a second request of
    the same file after the headers and again half-way, so two downloads overlap."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.unsized: set[str] = set()
        self.announce: dict[str, int] = {}
        self.trickle: set[str] = set()
        self.meet: set[str] = set()
        self.barrier = threading.Barrier(2, timeout=5)
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
                if name not in owner.unsized:
                    self.send_header("Content-Length", str(owner.announce.get(name, len(body))))
                self.end_headers()
                try:
                    self.send_body(name, body)
                except (ConnectionError, threading.BrokenBarrierError):
                    self.close_connection = True    # the client gave up: so do we

            def send_body(self, name, body):
                if name in owner.cut:
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                elif name in owner.trickle:
                    for byte in body[:TRICKLE_BYTES]:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.5)
                    self.close_connection = True
                elif name in owner.meet:
                    self.wfile.flush()
                    owner.barrier.wait()
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    owner.barrier.wait()
                    self.wfile.write(body[len(body) // 2:])
                else:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.barrier.abort()
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
    with pytest.raises(DownloadError) as info:
        load_fashion_mnist("test", root=tmp_path, base_url=f"http://127.0.0.1:{port}/",
                           progress=False)
    assert not isinstance(info.value, CacheError)       # the network, not the disk


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


# ---------------------------------------------------------------- local failures

def assert_local(message: str) -> None:
    """A local failure must not send the reader looking for a network problem."""
    assert "offline" not in message.lower() and "load_digits" not in message
    assert "LABCODE_DATA" in message                    # how to pick another folder


def writes_fail_with(monkeypatch, code: int, *, at: str) -> None:
    """Make download.py's files fail with errno `code` when opened ("open") or written."""
    real_open = open

    class Failing:
        def __init__(self, file):
            self.file = file

        def write(self, data):
            raise OSError(code, os.strerror(code), self.file.name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    def fake_open(path, mode="r", *args, **kwargs):
        if "x" not in mode and "w" not in mode:
            return real_open(path, mode, *args, **kwargs)
        if at == "open":
            raise OSError(code, os.strerror(code), str(path))
        return Failing(real_open(path, mode, *args, **kwargs))

    monkeypatch.setattr(download, "open", fake_open, raising=False)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_full_disk_is_named_and_leaves_nothing(server, cifar, tmp_path, monkeypatch, code):
    writes_fail_with(monkeypatch, code, at="write")
    with pytest.raises(CacheError, match="disk is full") as info:
        load_cifar10("train", root=tmp_path, base_url=server.url, progress=False)
    message = str(info.value)
    assert str(tmp_path / "cifar10") in message and ".part" in message
    assert_local(message)
    assert list((tmp_path / "cifar10").iterdir()) == []


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.EROFS])
def test_unwritable_cache_folder_is_named(server, cifar, tmp_path, monkeypatch, code):
    # Tests run as root, where chmod does not stop a write: the refusal is simulated.
    writes_fail_with(monkeypatch, code, at="open")
    with pytest.raises(CacheError, match="is not writable") as info:
        load_cifar10("train", root=tmp_path, base_url=server.url, progress=False)
    message = str(info.value)
    assert f"cache folder {tmp_path / 'cifar10'} is not writable" in message
    assert os.strerror(code) in message
    assert_local(message)
    assert list((tmp_path / "cifar10").iterdir()) == []


def test_too_little_free_space_stops_before_writing(server, cifar, tmp_path, monkeypatch):
    size = len(server.files[CIFAR_NAME])
    monkeypatch.setattr(download.shutil, "disk_usage",
                        lambda path: types.SimpleNamespace(total=size, used=size - 10, free=10))
    with pytest.raises(CacheError, match="not enough disk space") as info:
        load_cifar10("train", root=tmp_path, base_url=server.url, progress=False)
    message = str(info.value)
    assert f"needs {size:,} bytes, only 10 are free" in message
    assert str(tmp_path / "cifar10") in message
    assert_local(message)
    assert list((tmp_path / "cifar10").iterdir()) == []


@pytest.mark.parametrize("below", ["", "cache", "cache/deeper"])
def test_cache_path_through_a_regular_file_is_named(server, tmp_path, below):
    blocker = tmp_path / "data"
    blocker.write_bytes(b"not a folder")
    folder = blocker / below if below else blocker
    with pytest.raises(CacheError, match="regular file") as info:
        fetch(server.url + "x.bin", folder, "0" * 32, progress=False)
    message = str(info.value)
    assert f"{blocker} is a regular file, expected a folder" in message
    assert str(folder) in message
    assert_local(message)
    assert blocker.read_bytes() == b"not a folder"
    assert server.requests == []                        # found out before downloading


# ---------------------------------------------------------------- the server's side

@pytest.mark.parametrize("how", ["unsized", "announced"])
def test_file_larger_than_expected_is_stopped(server, tmp_path, how):
    good = bytes(range(256)) * 40
    md5 = hashlib.md5(good).hexdigest()
    if how == "unsized":                                # no Content-Length: count the bytes
        server.files["x.bin"] = good + b"and then some more"
        server.unsized.add("x.bin")
        expected = "is larger than expected: the file should have 10240 bytes"
    else:                                               # Content-Length says too much
        server.files["x.bin"] = good
        server.announce["x.bin"] = len(good) + 1000
        expected = "expected a file of 10240 bytes, but the server announces 11240"
    with pytest.raises(DownloadError) as info:
        fetch(server.url + "x.bin", tmp_path, md5, size=len(good), progress=False)
    message = str(info.value)
    assert expected in message and server.url + "x.bin" in message
    assert not isinstance(info.value, CacheError)
    assert list(tmp_path.iterdir()) == []


def test_unsized_download_of_the_right_size_succeeds(server, tmp_path):
    body = bytes(range(256)) * 40
    server.files["x.bin"] = body
    server.unsized.add("x.bin")
    md5 = hashlib.md5(body).hexdigest()
    path = fetch(server.url + "x.bin", tmp_path / "a", md5, size=len(body), progress=False)
    assert path.read_bytes() == body
    path = fetch(server.url + "x.bin", tmp_path / "b", md5, progress=False)  # size unknown
    assert path.read_bytes() == body
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "x.bin", "x.bin"]


def test_trickling_server_fails_at_the_deadline(server, tmp_path):
    body = bytes(100)
    server.files["slow.bin"] = body
    server.trickle.add("slow.bin")
    start = time.monotonic()
    with pytest.raises(DownloadError, match="timed out") as info:
        fetch(server.url + "slow.bin", tmp_path, hashlib.md5(body).hexdigest(),
              timeout=2.0, progress=False)
    elapsed = time.monotonic() - start
    # A deadline, not a speed: a timeout per read would wait for the server's 8 s of
    # trickle to end (and call it a cut-off transfer).
    assert elapsed < 6.0
    message = str(info.value)
    assert "timeout=2" in message and server.url + "slow.bin" in message
    assert " of 100 bytes had arrived" in message
    assert list(tmp_path.iterdir()) == []


def test_silent_server_is_given_up_before_the_deadline(server, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "STALL", 0.2)         # the trickle pauses 0.5 s
    server.files["slow.bin"] = bytes(100)
    server.trickle.add("slow.bin")
    with pytest.raises(DownloadError, match=r"stalled: no data for 0.2 s after \d+ bytes"):
        fetch(server.url + "slow.bin", tmp_path, hashlib.md5(bytes(100)).hexdigest(),
              timeout=30.0, progress=False)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- two at once

def test_two_threads_download_into_one_cache(server, tmp_path):
    body = bytes(range(256)) * 4096                     # 1 MiB, sent in two halves
    server.files["x.bin"] = body
    server.meet.add("x.bin")                            # both transfers overlap
    md5 = hashlib.md5(body).hexdigest()
    results, errors = [], []

    def download():
        try:
            results.append(fetch(server.url + "x.bin", tmp_path / "cache", md5,
                                 progress=False, timeout=10))
        except Exception as err:                        # reported below, with its type
            errors.append(err)

    threads = [threading.Thread(target=download) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == [] and len(results) == 2
    assert results[0] == results[1] == tmp_path / "cache" / "x.bin"
    assert results[0].read_bytes() == body
    assert server.requests == ["x.bin", "x.bin"]        # both really downloaded
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["x.bin"]  # no .part left


def test_temporary_names_differ_by_process_thread_and_draw():
    names = [part_name("x.bin") for _ in range(2)]
    thread = threading.Thread(target=lambda: names.append(part_name("x.bin")))
    thread.start()
    thread.join()
    assert len(set(names)) == 3
    assert all(n.startswith(f"x.bin.{os.getpid()}.") and n.endswith(".part") for n in names)
    assert names[0].split(".")[3] == str(threading.get_ident())
    assert names[2].split(".")[3] != str(threading.get_ident())


@pytest.mark.parametrize("kwargs, expected", [
    ({"md5": "abc"}, "expected md5 as 32 hex digits, got 'abc'"),
    ({"size": -1}, "expected size as a number of bytes >= 0 or None, got -1"),
    ({"timeout": 0}, "expected timeout in seconds > 0, got 0"),
    ({"url": "example.org/x.bin"}, "expected a URL such as 'https://host/file', got"),
])
def test_fetch_arguments_are_checked(tmp_path, kwargs, expected):
    arguments = {"url": "http://127.0.0.1:1/x.bin", "folder": tmp_path, "md5": "0" * 32}
    arguments.update(kwargs)
    url, folder, md5 = arguments.pop("url"), arguments.pop("folder"), arguments.pop("md5")
    with pytest.raises(ValueError, match=expected):
        fetch(url, folder, md5, progress=False, **arguments)
