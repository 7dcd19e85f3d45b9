"""Downloading files once, verifying them, and never leaving a broken file behind.

`fetch(url, folder, md5)` returns the path of a verified file, downloading it on first
use into a cache folder: `root` if given, else the environment variable LABCODE_DATA,
else ~/.cache/labcode. The bytes go to a `.part` file in the same folder, are checked
against the published MD5, and only then renamed into place with os.replace, so an
interrupted or corrupt download never leaves a file that looks valid. Any failure
raises one DownloadError that says what failed and points to the offline digits.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

OFFLINE_HINT = ("Without a network, use the offline digits instead: "
                "labcode.data.load_digits('train').")
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A dataset file could not be downloaded or failed its checksum."""


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """The folder datasets are kept in: `root`, else $LABCODE_DATA, else ~/.cache/labcode."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("LABCODE_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "labcode"


def md5sum(path: str | os.PathLike) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, folder: str | os.PathLike, md5: str, *, progress: bool = True,
          timeout: float = 60.0) -> Path:
    """Download `url` into `folder` unless a file with the right MD5 is already there.

    Args:
        url: where the file lives; its last path component names the local file.
        folder: the cache folder (created if missing).
        md5: the published MD5 of the file, as 32 hex digits.
        progress: show a tqdm progress bar.
        timeout: seconds to wait for the server before giving up.
    """
    folder = Path(folder)
    target = folder / url.rstrip("/").rsplit("/", 1)[-1]
    if target.exists() and md5sum(target) == md5:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + f".{os.getpid()}.part")
    try:
        _download(url, part, progress=progress, timeout=timeout)
        actual = md5sum(part)
        if actual != md5:
            raise DownloadError(
                f"checksum mismatch for {url}: expected md5 {md5}, got {actual}. "
                f"The file was discarded; try again later. {OFFLINE_HINT}")
        os.replace(part, target)
    finally:
        if part.exists():
            part.unlink()
    return target


def _download(url: str, part: Path, *, progress: bool, timeout: float) -> None:
    from tqdm.auto import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "labcode"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total is not None and total.isdigit() else None
            received = 0
            with open(part, "wb") as out, tqdm(
                    total=total, unit="B", unit_scale=True, disable=not progress,
                    desc=part.name.split(".")[0], leave=False) as bar:
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            if total is not None and received != total:
                raise DownloadError(
                    f"download of {url} was cut off: got {received} of {total} bytes. "
                    f"{OFFLINE_HINT}")
    except urllib.error.HTTPError as err:
        raise DownloadError(
            f"could not download {url}: HTTP status {err.code} ({err.reason}). "
            f"{OFFLINE_HINT}") from err
    except DownloadError:
        raise
    except http.client.HTTPException as err:  # e.g. IncompleteRead: the server hung up
        raise DownloadError(
            f"download of {url} was cut off: {type(err).__name__}. {OFFLINE_HINT}") from err
    except (urllib.error.URLError, OSError, ValueError) as err:  # ValueError: a bad URL
        reason = getattr(err, "reason", err)
        raise DownloadError(
            f"could not download {url}: {reason}. Are you offline? {OFFLINE_HINT}") from err
