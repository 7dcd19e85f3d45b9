"""Checkpoints: everything a training run needs to continue exactly where it stopped.

`labcode.train.fit` saves one at the end of every epoch (or every N steps) and resumes
from it. A checkpoint holds the states of the model, optimizer, learning-rate scheduler
and gradient scaler; every random generator (Python's, NumPy's, torch's, each GPU's, and
the one a DataLoader shuffles with); the position in the run; and the History so far.
A run resumed from it ends with the same weights, bit for bit, as one that never stopped.
(Random transforms inside DataLoader worker processes are the exception: each worker
keeps its own generators. The order of the batches is restored all the same.)

Two things can go wrong with a file on disk, and both are caught here:

- a crash while saving. The new checkpoint is written to a temporary file next to the
  old one, flushed to the disk, and then put in its place with `os.replace`, which is
  atomic: a reader sees the old file or the new one, never half of one. Temporary files
  left behind by a save that was killed are removed by the next save.
- a file that changed afterwards (a truncated copy, flipped bits) or was never a
  checkpoint. The SHA-256 digest of the contents is stored with them and compared on
  loading; anything unreadable, foreign or damaged raises one `CheckpointError` that
  names the file and says how to start over, instead of training on from wrong weights.

A checkpoint is an ordinary torch file: `{"format", "version", "sha256", "contents"}`.
Read one with `load_checkpoint(path)`.
"""
from __future__ import annotations

import glob
import hashlib
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from labcode import distributed
from labcode.data.loader import GPULoader

FORMAT = "labcode.checkpoint"
VERSION = 1
TRAINING_KEYS = ("model", "optimizer", "scheduler", "scaler", "rng", "epoch_rng", "loader",
                 "position", "history")
START_OVER = ("To start over, delete the file or pass another path as checkpoint= "
              "(resume=False keeps the file until the next save overwrites it).")


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, not a checkpoint, damaged, of another
    model, or (when saving) holding weights that are not finite numbers."""


@dataclass
class Position:
    """Where a training run stands."""

    epoch: int = 0          # epochs completed
    batch: int = 0          # batches done in the current epoch
    step: int = 0           # optimizer steps in total
    elapsed: float = 0.0    # seconds spent on the current epoch before a checkpoint
    partial: list | None = None  # loss sum, correct, count of the unfinished epoch


# ------------------------------------------------------------------ files

def save_checkpoint(path: str | os.PathLike, contents: dict) -> None:
    """Write `contents` (a dict of tensors, numbers, strings, lists and dicts) to `path`
    atomically, with its SHA-256 digest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        torch.save({"format": FORMAT, "version": VERSION, "sha256": digest(contents),
                    "contents": contents}, tmp)
        with open(tmp, "r+b") as written:
            os.fsync(written.fileno())  # on the disk before it replaces the old file
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The contents saved by `save_checkpoint`, on the CPU, after checking their digest.

    Raises CheckpointError for a file that cannot be read, is not a labcode checkpoint,
    or whose contents no longer match their digest.
    """
    path = Path(path)
    with open(path, "rb") as file:  # a missing file or no permission: the OS's error
        try:
            saved = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises EOFError, KeyError, OSError, ... here
            raise CheckpointError(
                f"checkpoint {path} cannot be read ({type(err).__name__}: {err}): the file "
                f"is damaged (perhaps a copy cut short) or is not a checkpoint. {START_OVER}"
            ) from err
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a labcode checkpoint: expected a file written by "
            f"labcode.train.fit, found {_describe(saved)}. {START_OVER}")
    if saved.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {saved.get('version')!r}; this labcode "
            f"reads version {VERSION}. {START_OVER}")
    contents = saved.get("contents")
    if digest(contents) != saved.get("sha256"):
        raise CheckpointError(
            f"checkpoint {path} is damaged: its contents do not match the SHA-256 digest "
            f"saved with them (bytes changed on disk or in a copy). {START_OVER}")
    return contents


def digest(contents) -> str:
    """SHA-256 of nested dicts, lists, tuples, tensors (dtype, shape and bytes) and
    plain values; equal before saving and after loading."""
    hasher = hashlib.sha256()
    _feed(hasher, contents)
    return hasher.hexdigest()


def _feed(hasher, value) -> None:
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        hasher.update(f"tensor {value.dtype} {tuple(value.shape)}|".encode())
        hasher.update(flat.view(torch.uint8).numpy())
    elif isinstance(value, dict):
        hasher.update(f"dict {len(value)}|".encode())
        for key, item in value.items():
            _feed(hasher, key)
            _feed(hasher, item)
    elif isinstance(value, (list, tuple)):
        hasher.update(f"{type(value).__name__} {len(value)}|".encode())
        for item in value:
            _feed(hasher, item)
    else:
        hasher.update(f"{type(value).__name__} {value!r}|".encode())


def _remove_leftovers(path: Path) -> None:
    # A save killed between torch.save and os.replace leaves NAME.<pid>.tmp behind.
    # Another live process saving to the same file at the same moment would be
    # overwriting this run's checkpoints anyway, so every leftover goes.
    for name in glob.glob(glob.escape(str(path)) + ".*.tmp"):
        pid = Path(name).name[len(path.name) + 1:-len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid():
            Path(name).unlink(missing_ok=True)


def _describe(value) -> str:
    if isinstance(value, dict):
        keys = [str(k) for k in list(value)[:6]]
        more = ", ..." if len(value) > 6 else ""
        return f"a dict with keys [{', '.join(keys)}{more}]"
    return f"a {type(value).__name__}"


# ------------------------------------------------------------------ training state

def save_training(path: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                  scheduler, scaler, data: Iterable, history: dict, position: Position,
                  epoch_rng: dict | None) -> None:
    """Save a training run (in the main process only); refuse non-finite weights."""
    if not distributed.is_main():
        return
    _check_finite(model, path)
    save_checkpoint(path, {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict(),
        "rng": rng_state(data),
        "epoch_rng": epoch_rng,
        "loader": data.state_dict() if isinstance(data, GPULoader) else None,
        "position": asdict(position),
        "history": history,
    })


def restore_training(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler, scaler, data: Iterable) -> dict:
    """Load a training run saved by `save_training` into the given objects and random
    generators; returns the checkpoint's contents."""
    saved = load_checkpoint(path)
    missing = [key for key in TRAINING_KEYS if key not in saved]
    if missing:
        raise CheckpointError(f"{path} is a labcode checkpoint but not of a training run "
                              f"(it lacks {missing}). {START_OVER}")
    try:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise CheckpointError(f"fit: checkpoint {path} does not match this model or optimizer "
                              f"({err}). {START_OVER}") from err
    expected, found = len(saved["rng"]["data"]), len(_data_generators(data))
    if expected != found:
        raise CheckpointError(
            f"checkpoint {path} was saved with a training loader that shuffles with "
            f"{expected} torch.Generator(s), this one has {found}: resume with the same "
            f"kind of loader (e.g. make_dataloader(seed=...) both times). {START_OVER}")
    if scheduler is not None and saved["scheduler"] is not None:
        scheduler.load_state_dict(saved["scheduler"])
    if saved["scaler"]:
        scaler.load_state_dict(saved["scaler"])
    if isinstance(data, GPULoader) and saved["loader"] is not None:
        data.load_state_dict(saved["loader"])
    set_rng_state(saved["rng"], data)
    return saved


def _check_finite(model: nn.Module, path: Path) -> None:
    named = [(name, p) for name, p in model.named_parameters() if p.is_floating_point()]
    if not named:
        return
    finite = torch.stack([torch.isfinite(p).all() for _, p in named]).tolist()  # one wait
    bad = [name for (name, _), ok in zip(named, finite) if not ok]
    if bad:
        raise CheckpointError(
            f"refusing to save checkpoint {path}: parameter(s) {', '.join(bad[:4])} hold NaN "
            f"or infinite values, and training could not continue from them. The previous "
            f"checkpoint, if any, is kept. Try a lower learning rate or grad_clip=1.0.")


# ------------------------------------------------------------------ random state

def rng_state(data: Iterable | None = None) -> dict:
    """The state of every random generator a run draws from, `data`'s included."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                  int(np_state[2]), int(np_state[3]), float(np_state[4])),
        "data": [g.get_state() for g in _data_generators(data)],
    }


def set_rng_state(state: dict, data: Iterable | None = None) -> None:
    """Put every random generator (`data`'s included) back into a saved state."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    for generator, saved in zip(_data_generators(data), state["data"]):
        generator.set_state(saved)


def _data_generators(data) -> list[torch.Generator]:
    """The generators a DataLoader shuffles with: its own (make_dataloader(seed=...)
    gives it one) and its sampler's, each once. A loader without one draws from torch's
    global generator; a GPULoader's generator travels in its own state_dict."""
    if data is None or isinstance(data, GPULoader):
        return []
    found: list[torch.Generator] = []
    batch_sampler = getattr(data, "batch_sampler", None)
    for owner in (data, getattr(data, "sampler", None), getattr(batch_sampler, "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found


# ------------------------------------------------------------------ resume position

def epoch_batches(data: Iterable, position: Position, saved: dict | None
                  ) -> tuple[Iterator, dict | None]:
    """This epoch's batches, starting where a checkpoint left off, and the random state
    at the epoch's start (which a checkpoint of a loader other than GPULoader needs)."""
    if isinstance(data, GPULoader):
        return iter(data), None  # the loader's own state_dict carries the position
    if saved is None or position.batch == 0:
        epoch_rng = rng_state(data)
        return iter(data), epoch_rng
    # Other loaders cannot jump: restore the random state of the epoch's start, replay
    # the batches already trained on, then restore the state at the checkpoint.
    set_rng_state(saved["epoch_rng"], data)
    iterator = iter(data)
    for _ in range(position.batch):
        next(iterator)
    set_rng_state(saved["rng"], data)
    return iterator, saved["epoch_rng"]
