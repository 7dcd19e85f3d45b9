"""A small CIFAR-10 archive on a local HTTP server, and torchvision weights in the cache.

`cifar10_archive` writes `cifar-10-python.tar.gz` in CIFAR-10's real layout: a folder
`cifar-10-batches-py` holding `batches.meta` and the pickles `data_batch_1` ..
`data_batch_5` and `test_batch`, each a dict with b"data" (uint8 (n, 3072): the red,
green and blue planes row by row), b"labels", b"filenames" and b"batch_label", written
with pickle protocol 2 as the original (Python 2) files are. Only the image count is
small. `FileServer` serves files by name from 127.0.0.1 and records the requests.

`cache_pretrained` saves the state dict of torchvision's own constructor (weights=None,
so random values) under the file name torchvision's Weights enum downloads, in
$TORCH_HOME/hub/checkpoints: `load_state_dict_from_url` then loads it without a network.
torchvision checks the hash in the name only when asked (check_hash=True).
"""
from __future__ import annotations

import hashlib
import http.server
import io
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import torch

CIFAR10_NAME = "cifar-10-python.tar.gz"
CIFAR10_LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
                       "dog", "frog", "horse", "ship", "truck")


def _member(tar: tarfile.TarFile, name: str, content: dict) -> None:
    raw = pickle.dumps(content, protocol=2)
    info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
    info.size = len(raw)
    tar.addfile(info, io.BytesIO(raw))


def cifar10_archive(path: Path, per_batch: int = 60, test: int = 100, seed: int = 0) -> str:
    """Write a CIFAR-10 python archive with 5 x `per_batch` training and `test` test images.

    Returns its MD5. Images are random; labels cycle through the ten classes so every
    class occurs in every batch.
    """
    rng = np.random.default_rng(seed)
    with tarfile.open(path, "w:gz") as tar:
        _member(tar, "batches.meta", {
            b"num_cases_per_batch": per_batch, b"num_vis": 3072,
            b"label_names": [name.encode() for name in CIFAR10_LABEL_NAMES]})
        for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", test)]:
            labels = [int(x) for x in (np.arange(n) + rng.integers(10)) % 10]
            _member(tar, name, {
                b"batch_label": f"{name} (a small random stand-in)".encode(),
                b"labels": labels,
                b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                b"filenames": [f"{name}_{i:05d}.png".encode() for i in range(n)]})
    return hashlib.md5(path.read_bytes()).hexdigest()


class FileServer:
    """Serves the files in `folder` by name on 127.0.0.1; `requests` lists what was asked."""

    def __init__(self, folder: Path):
        self.requests: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                owner.requests.append(name)
                file = folder / name
                if not name or not file.is_file():
                    self.send_error(404, "Not Found")
                    return
                body = file.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cifar/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def hub_checkpoint(torch_home: Path, weights) -> Path:
    """Where torch hub keeps the file of a torchvision Weights member under `torch_home`."""
    return torch_home / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[-1]


def cache_pretrained(torch_home: Path, weights, builder) -> Path:
    """Save `builder(weights=None).state_dict()` where torch hub looks for `weights`."""
    path = hub_checkpoint(torch_home, weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(builder(weights=None).state_dict(), path)
    return path
