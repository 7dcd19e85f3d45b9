"""Downloading files once, verifying them, and never leaving a broken file behind.

`fetch(url, folder, md5)` returns the path of a verified file, downloading it on first
use into a cache folder: `root` if given, else the environment variable LABCODE_DATA,
else ~/.cache/labcode. The bytes go to a `.part` file in the same folder whose name holds
the process id, the thread id and a random suffix, so two downloads never share one. The
file is checked against the published MD5 and only then renamed into place with
os.replace, so an interrupted or corrupt download never leaves a file that looks valid.

Failures raise DownloadError, with a message naming the URL or path, what was expected
and what happened. Its subclass CacheError is a local problem (disk full, a folder that
cannot be written, a cache path that runs through a regular file): no network would
help, so only network and server failures point to the offline digits. `timeout` bounds
the whole transfer, not each read: a server that sends a byte now and then still stops;
and a server that sends nothing for STALL seconds is given up on sooner.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import secrets
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

OFFLINE_HINT = ("Without a network, use the offline digits instead: "
                "labcode.data.load_digits('train').")
CHOOSE_FOLDER = "Choose another cache folder with root=... or the LABCODE_DATA variable."
CHUNK = 1 << 20
STALL = 60.0  # seconds without a byte after which a transfer is given up, deadline or not


class DownloadError(RuntimeError):
    """A dataset file could not be downloaded, timed out, or failed its checksum."""


class CacheError(DownloadError):
    """The cache folder cannot hold the file: disk full, not writable, or not a folder."""


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


def fetch(url: str, folder: str | os.PathLike, md5: str, *, size: int | None = None,
          progress: bool = True, timeout: float = 1800.0) -> Path:
    """Download `url` into `folder` unless a file with the right MD5 is already there.

    Args:
        url: where the file lives; its last path component names the local file.
        folder: the cache folder (created if missing).
        md5: the published MD5 of the file, as 32 hex digits.
        size: the file's size in bytes, if known; a server sending more is cut short.
        progress: show a tqdm progress bar.
        timeout: seconds the whole download may take, connecting included (the default,
            half an hour, lets CIFAR-10's 163 MB through at 0.1 MB/s). Whatever it is, a
            server that sends nothing for STALL seconds is given up on.
    """
    _check_arguments(url, md5, size, timeout)
    folder = Path(folder)
    target = folder / url.rstrip("/").rsplit("/", 1)[-1]
    with _local_errors(folder):
        if target.exists() and md5sum(target) == md5:
            return target
        folder.mkdir(parents=True, exist_ok=True)
    part = folder / part_name(target.name)
    try:
        _download(url, part, size=size, progress=progress, timeout=timeout)
        with _local_errors(folder):
            actual = md5sum(part)
        if actual != md5:
            raise DownloadError(
                f"checksum mismatch for {url}: expected md5 {md5}, got {actual}. "
                f"The file was discarded; try again later. {OFFLINE_HINT}")
        with _local_errors(folder):
            os.replace(part, target)
    finally:
        try:
            part.unlink(missing_ok=True)
        except OSError:
            pass  # the error being raised says more than a failed clean-up would
    return target


def part_name(name: str) -> str:
    """A temporary name for `name` that no other process or thread will pick."""
    return f"{name}.{os.getpid()}.{threading.get_ident()}.{secrets.token_hex(4)}.part"


def _check_arguments(url: str, md5: str, size: int | None, timeout: float) -> None:
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"fetch: expected a URL such as 'https://host/file', got {url!r}")
    if not (isinstance(md5, str) and len(md5) == 32
            and all(c in "0123456789abcdef" for c in md5.lower())):
        raise ValueError(f"fetch: expected md5 as 32 hex digits, got {md5!r}")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise ValueError(f"fetch: expected size as a number of bytes >= 0 or None, got {size!r}")
    if not timeout > 0:
        raise ValueError(f"fetch: expected timeout in seconds > 0, got {timeout!r}")


# ---------------------------------------------------------------- the transfer

def _download(url: str, part: Path, *, size: int | None, progress: bool,
              timeout: float) -> None:
    from tqdm.auto import tqdm

    deadline = time.monotonic() + timeout
    response = _open(url, min(timeout, STALL))
    with response:
        announced = response.headers.get("Content-Length")
        announced = int(announced) if announced is not None and announced.isdigit() else None
        if size is not None and announced is not None and announced != size:
            raise DownloadError(
                f"{url}: expected a file of {size} bytes, but the server announces "
                f"{announced} bytes. Nothing was written; the server may serve another file.")
        limit = size if size is not None else announced
        if limit is not None:
            _check_free_space(part.parent, limit)
        received = 0
        # Every OSError left in this block is local: network errors become DownloadError
        # inside _read_block before they can get here.
        with _local_errors(part.parent):
            with open(part, "xb") as out, tqdm(
                    total=limit, unit="B", unit_scale=True, disable=not progress,
                    desc=url.rsplit("/", 1)[-1], leave=False) as bar:
                while block := _read_block(response, url, deadline, timeout, received, limit):
                    received += len(block)
                    if limit is not None and received > limit:
                        raise DownloadError(
                            f"{url} is larger than expected: the file should have {limit} "
                            f"bytes, the server sent at least {received}. The download was "
                            f"stopped and discarded.")
                    out.write(block)
                    bar.update(len(block))
    if limit is not None and received != limit:
        raise DownloadError(
            f"download of {url} was cut off: got {received} of {limit} bytes. {OFFLINE_HINT}")


def _open(url: str, timeout: float) -> http.client.HTTPResponse:
    """Connect and read the headers; every failure here is the network's or the server's."""
    request = urllib.request.Request(url, headers={"User-Agent": "labcode"})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        raise DownloadError(
            f"could not download {url}: HTTP status {err.code} ({err.reason}). "
            f"{OFFLINE_HINT}") from err
    except ValueError as err:  # urllib's word for a URL it cannot use
        raise DownloadError(f"could not download {url}: not a usable URL ({err}).") from err
    except (urllib.error.URLError, TimeoutError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, TimeoutError):
            raise DownloadError(
                f"could not download {url}: no answer within {timeout:g} s. "
                f"Are you offline? {OFFLINE_HINT}") from err
        raise DownloadError(
            f"could not download {url}: {reason}. Are you offline? {OFFLINE_HINT}") from err
    except (http.client.HTTPException, OSError) as err:
        raise DownloadError(
            f"could not download {url}: {type(err).__name__}: {err}. Are you offline? "
            f"{OFFLINE_HINT}") from err


def _read_block(response: http.client.HTTPResponse, url: str, deadline: float,
                timeout: float, received: int, total: int | None) -> bytes:
    """The next bytes from the server (b"" at the end), or DownloadError at the deadline."""
    if time.monotonic() >= deadline:
        raise _timed_out(url, timeout, received, total)
    try:
        _wait_at_most(response, min(deadline - time.monotonic(), STALL))
        return response.read1(CHUNK)  # returns what has arrived, not a full CHUNK
    except TimeoutError as err:
        if time.monotonic() < deadline:
            raise DownloadError(
                f"download of {url} stalled: no data for {STALL:g} s after {received} "
                f"bytes. Try again later. {OFFLINE_HINT}") from err
        raise _timed_out(url, timeout, received, total) from err
    except (http.client.HTTPException, OSError) as err:  # the server hung up
        raise DownloadError(
            f"download of {url} was cut off after {received} bytes: "
            f"{type(err).__name__}. {OFFLINE_HINT}") from err


def _timed_out(url: str, timeout: float, received: int, total: int | None) -> DownloadError:
    of = f" of {total}" if total is not None else ""
    return DownloadError(
        f"download of {url} timed out: the whole transfer may take {timeout:g} s "
        f"(timeout={timeout:g}), and only {received}{of} bytes had arrived. The server or "
        f"the connection is too slow; try again, or pass a larger timeout. {OFFLINE_HINT}")


def _wait_at_most(response: http.client.HTTPResponse, seconds: float) -> None:
    """Let the next socket read wait no longer than `seconds`.

    urlopen's timeout applies to each read on its own, so a server sending a byte now and
    then would never time out. http.client does not expose the socket, so we reach it
    through the response's file; if that ever changes, reads fall back to urlopen's
    timeout and the deadline is still checked between reads.
    """
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 1e-3))


# ---------------------------------------------------------------- the cache folder

def _check_free_space(folder: Path, needed: int) -> None:
    with _local_errors(folder):
        free = shutil.disk_usage(folder).free
    if free < needed:
        raise CacheError(
            f"not enough disk space in {folder}: the download needs {needed:,} bytes, "
            f"only {free:,} are free. Free some space. {CHOOSE_FOLDER}")


@contextlib.contextmanager
def _local_errors(folder: Path) -> Iterator[None]:
    """Turn an OSError from the cache folder into a CacheError that says what it is."""
    try:
        yield
    except OSError as err:
        raise _cache_error(err, folder) from err


def _cache_error(err: OSError, folder: Path) -> CacheError:
    path = err.filename if err.filename is not None else folder
    reason = err.strerror or str(err)
    if isinstance(err, (NotADirectoryError, FileExistsError)):
        blocker = _first_file_on(folder)
        if blocker is not None:
            return CacheError(
                f"the cache folder {folder} cannot be used: {blocker} is a regular file, "
                f"expected a folder. Move that file away. {CHOOSE_FOLDER}")
    if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return CacheError(
            f"the disk is full: writing {path} failed ({reason}). Free some space. "
            f"{CHOOSE_FOLDER}")
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return CacheError(
            f"the cache folder {folder} is not writable: {path}: {reason}. Expected a "
            f"folder this user can write to. {CHOOSE_FOLDER}")
    return CacheError(f"the cache folder {folder} failed: {path}: {reason}. {CHOOSE_FOLDER}")


def _first_file_on(folder: Path) -> Path | None:
    """The first component of `folder` (from the top) that exists and is not a folder."""
    for path in [*reversed(folder.parents), folder]:
        if path.exists() and not path.is_dir():
            return path
        if not path.exists():
            return None
    return None
