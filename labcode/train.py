"""Training and evaluation used by every chapter: `fit`, `evaluate`, `predict`.

`fit` is mini-batch stochastic gradient descent as every paper in this book trained its
models (AlexNet: Krizhevsky, Sutskever & Hinton, NeurIPS 2012, sec. 5), written as one
readable loop: forward pass, loss, backward pass, optimizer step. Around that loop it
adds what a long run on a shared GPU needs:

- mixed precision (Micikevicius et al., "Mixed Precision Training", ICLR 2018): the
  forward pass in bfloat16, or in float16 with a gradient scaler on older GPUs, chosen
  by `labcode.device.precision`;
- channels-last memory layout for convolutional networks on CUDA;
- a seed that makes a CPU run repeat exactly;
- checkpoints written atomically at the end of each epoch or every N steps, holding
  everything needed to resume (model, optimizer, scheduler, scaler, random states,
  loader position, history), so a resumed run ends with the same weights as an
  uninterrupted one;
- an error that names the step when the loss stops being a finite number;
- DistributedDataParallel when started with torchrun (see `labcode.distributed`).

The training data can be a `labcode.data.GPULoader`, a torch DataLoader, or any
iterable of (inputs, labels) batches.
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labcode import distributed
from labcode.data.loader import GPULoader
from labcode.device import precision

SYNC_EVERY = 25  # steps between reading the loss back from the GPU (each read waits)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass
class History:
    """What happened during training: one entry per epoch, and every step's loss."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def to_dict(self) -> dict[str, list[float]]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "History":
        return cls(**{k: list(v) for k, v in values.items() if k in cls.__dataclass_fields__})

    def plot(self):
        """Loss and accuracy curves, train against validation (a matplotlib Figure)."""
        from labcode.viz import plot_history
        return plot_history(self)

    def __repr__(self) -> str:
        if not self.train_loss:
            return f"History(0 epochs, {len(self.step_loss)} steps)"
        last = f"train loss {self.train_loss[-1]:.4f}, acc {self.train_acc[-1]:.4f}"
        if self.val_loss:
            last += f"; val loss {self.val_loss[-1]:.4f}, acc {self.val_acc[-1]:.4f}"
        return f"History({self.epochs} epochs, {len(self.step_loss)} steps; last: {last})"


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fit(model: nn.Module, train_data: Iterable, *, epochs: int,
        optimizer: torch.optim.Optimizer, scheduler=None, scheduler_step: str = "step",
        val_data: Iterable | None = None, loss_fn: Callable | None = None,
        device: torch.device | str | None = None, mixed: bool = True,
        channels_last: bool | None = None, compile: bool = False, seed: int | None = None,
        checkpoint: str | os.PathLike | None = None, checkpoint_every: int | None = None,
        resume: bool = True, max_steps: int | None = None, grad_clip: float | None = None,
        progress: bool = True) -> History:
    """Train `model` on `train_data` for `epochs` epochs and return its History.

    Args:
        model: the network; moved to `device`.
        train_data: a GPULoader, a DataLoader, or any iterable of (x, y) batches.
        epochs: passes over the training data.
        optimizer: built on `model.parameters()`.
        scheduler: a learning-rate scheduler, or None.
        scheduler_step: "step" (call scheduler.step() after every optimizer step, as
            OneCycleLR expects) or "epoch" (after every epoch, as StepLR expects).
            ReduceLROnPlateau is always stepped per epoch with the validation loss.
        val_data: evaluated at the end of every epoch, or None.
        loss_fn: loss(outputs, labels); default cross-entropy.
        device: where to train; None picks (under torchrun: this process's GPU).
        mixed: mixed precision where the device supports it.
        channels_last: NHWC memory layout; None turns it on for CNNs on CUDA.
        compile: run the model through torch.compile.
        seed: seed every random generator (and the GPULoader's) for a repeatable run.
        checkpoint: file to save training state to, atomically; None saves nothing.
        checkpoint_every: also save every this many steps (default: end of epochs only).
        resume: continue from `checkpoint` if it exists.
        max_steps: stop after this many optimizer steps in total (counted across resumes).
        grad_clip: clip the gradient norm to this value, or None.
        progress: show a tqdm progress bar.
    """
    _check_fit_args(model, optimizer, epochs, checkpoint_every, max_steps, scheduler_step)
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    is_distributed = distributed.setup()
    device = distributed.default_device() if device is None else torch.device(device)
    prec = precision(device, mixed)
    if seed is not None:
        seed_everything(seed)
        if isinstance(train_data, GPULoader):
            train_data.manual_seed(seed)
    if channels_last is None:
        channels_last = device.type == "cuda" and any(
            isinstance(m, nn.Conv2d) for m in model.modules())
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)
    scaler = prec.scaler()

    state = _RunState()
    history = History()
    path = Path(checkpoint) if checkpoint is not None else None
    saved = None
    if path is not None and resume and path.exists():
        saved = _load_checkpoint(path, model, optimizer, scheduler, scaler, train_data)
        history = History.from_dict(saved["history"])
        state = _RunState(**saved["position"])

    net = model
    if is_distributed:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        net = torch.compile(net)

    steps_per_epoch = _length(train_data)
    bar = _progress_bar(progress, epochs, steps_per_epoch, state.step)
    done = state.epoch >= epochs or (max_steps is not None and state.step >= max_steps)
    try:
        while not done:
            net.train()
            sampler = getattr(train_data, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(state.epoch)
            batches, epoch_rng = _epoch_iterator(train_data, state, saved)
            saved = None
            epoch_start = time.perf_counter() - state.elapsed
            sums = _Sums(device, state)  # loss, correct and count, kept on the device
            pending: list[torch.Tensor] = []  # step losses not yet read back

            def sync():
                _flush(pending, history, state, optimizer, mixed=prec.dtype is not None)
                if bar is not None:
                    bar.set_postfix_str(_postfix(state, history, sums), refresh=False)

            for x, y in batches:
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                if channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                with prec.autocast():
                    out = net(x)
                    loss = loss_fn(out, y)
                if loss.dim() != 0:
                    raise ValueError(f"fit: loss_fn must return a scalar, got shape "
                                     f"{tuple(loss.shape)}")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                scaler.step(optimizer)
                scaler.update()
                if scheduler is not None and scheduler_step == "step" and not _plateau(scheduler):
                    scheduler.step()

                sums.add(loss.detach(), out.detach(), y)
                pending.append(loss.detach().float())
                state.step += 1
                state.batch += 1
                if bar is not None:
                    bar.update(1)
                stop = max_steps is not None and state.step >= max_steps
                due = checkpoint_every is not None and state.step % checkpoint_every == 0
                if len(pending) >= SYNC_EVERY or stop or due:
                    sync()
                if path is not None and (due or stop):
                    state.partial = sums.state()
                    state.elapsed = time.perf_counter() - epoch_start
                    _save_checkpoint(path, model, optimizer, scheduler, scaler, train_data,
                                     history, state, epoch_rng)
                if stop:
                    done = True
                    break
            if done:
                break

            sync()
            loss_sum, correct, count = sums.totals()
            history.train_loss.append(loss_sum / max(count, 1))
            history.train_acc.append(correct / max(count, 1) if sums.classifying else math.nan)
            if val_data is not None:
                val_loss, val_acc = evaluate(model, val_data, device=device,
                                             loss_fn=loss_fn, mixed=mixed)
                history.val_loss.append(val_loss)
                history.val_acc.append(val_acc)
            if scheduler is not None and _plateau(scheduler):
                scheduler.step(history.val_loss[-1] if val_data is not None
                               else history.train_loss[-1])
            elif scheduler is not None and scheduler_step == "epoch":
                scheduler.step()
            history.lr.append(float(optimizer.param_groups[0]["lr"]))
            history.epoch_time.append(time.perf_counter() - epoch_start)
            state.epoch += 1
            state.batch = 0
            state.elapsed = 0.0
            state.partial = None
            if bar is not None:
                bar.set_postfix_str(_postfix(state, history, None), refresh=True)
            if path is not None:
                _save_checkpoint(path, model, optimizer, scheduler, scaler, train_data,
                                 history, state, None)
            done = state.epoch >= epochs
    finally:
        if bar is not None:
            bar.close()
    return history


# ------------------------------------------------------------------ evaluation

@torch.no_grad()
def evaluate(model: nn.Module, data: Iterable, device: torch.device | str | None = None, *,
             loss_fn: Callable | None = None, mixed: bool = True) -> tuple[float, float]:
    """Mean loss and accuracy of `model` on `data` (summed over all processes).

    Args:
        model: the network; put in eval mode for the pass and restored afterwards.
        data: a GPULoader, a DataLoader, or any iterable of (x, y) batches.
        device: where to run; None uses the device of the model's parameters.
        loss_fn: loss(outputs, labels) returning the batch mean; default cross-entropy.
        mixed: mixed precision where the device supports it.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"evaluate: model must be a torch.nn.Module, got {type(model).__name__}")
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    device = _model_device(model) if device is None else torch.device(device)
    prec = precision(device, mixed)
    was_training = model.training
    model.eval()
    sums = _Sums(device, None)
    try:
        for x, y in data:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with prec.autocast():
                out = model(x)
                loss = loss_fn(out, y)
            sums.add(loss, out, y)
    finally:
        model.train(was_training)
    loss_sum, correct, count = sums.totals()
    if count == 0:
        raise ValueError("evaluate: the data yielded no batches")
    return loss_sum / count, (correct / count if sums.classifying else math.nan)


@torch.no_grad()
def predict(model: nn.Module, data: Iterable, device: torch.device | str | None = None, *,
            mixed: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes and true labels for all of `data`, as CPU int64 tensors (N,),
    ready for a confusion matrix."""
    device = _model_device(model) if device is None else torch.device(device)
    prec = precision(device, mixed)
    was_training = model.training
    model.eval()
    preds, labels = [], []
    try:
        for x, y in data:
            with prec.autocast():
                out = model(x.to(device, non_blocking=True))
            preds.append(out.argmax(dim=1).cpu())
            labels.append(y.cpu())
    finally:
        model.train(was_training)
    return torch.cat(preds), torch.cat(labels).long()


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor,
                  k: int | tuple[int, ...] = 1) -> float | tuple[float, ...]:
    """Fraction of samples whose true class is among the k highest logits.

    Args:
        logits: (N, classes).
        labels: int (N,).
        k: one k, or a tuple such as (1, 5) for several at once.
    """
    if logits.dim() != 2 or labels.dim() != 1 or len(logits) != len(labels):
        raise ValueError(f"topk_accuracy: expected logits (N, classes) and labels (N,), got "
                         f"{tuple(logits.shape)} and {tuple(labels.shape)}")
    ks = (k,) if isinstance(k, int) else tuple(k)
    if any(not 1 <= kk <= logits.shape[1] for kk in ks):
        raise ValueError(f"topk_accuracy: k must lie in 1..{logits.shape[1]}, got {k}")
    top = logits.topk(max(ks), dim=1).indices  # (N, max k)
    hits = top == labels[:, None]
    result = tuple(hits[:, :kk].any(dim=1).float().mean().item() for kk in ks)
    return result[0] if isinstance(k, int) else result


# ------------------------------------------------------------------ internals

@dataclass
class _RunState:
    epoch: int = 0          # epochs completed
    batch: int = 0          # batches done in the current epoch
    step: int = 0           # optimizer steps in total
    elapsed: float = 0.0    # seconds spent on the current epoch before a checkpoint
    partial: list | None = None  # loss sum, correct, count of the unfinished epoch


class _Sums:
    """Loss and correct predictions summed on the device (no waiting on a GPU), and the
    sample count on the host."""

    def __init__(self, device: torch.device, state: _RunState | None):
        loss_sum, correct, count = state.partial if state is not None and state.partial \
            else (0.0, 0.0, 0)
        self.loss_sum = torch.tensor(loss_sum, dtype=torch.float64, device=device)
        self.correct = torch.tensor(correct, dtype=torch.float64, device=device)
        self.count = int(count)
        self.classifying = True

    def add(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> None:
        n = y.shape[0]
        self.loss_sum.add_(loss, alpha=n)  # one kernel: every launch counts on a GPU
        if out.dim() == 2 and y.dim() == 1 and not y.is_floating_point():
            self.correct.add_((out.argmax(dim=1) == y).sum())
        else:
            self.classifying = False
        self.count += n

    def state(self) -> list:
        return [self.loss_sum.item(), self.correct.item(), self.count]

    def totals(self) -> tuple[float, float, int]:
        values = torch.stack([self.loss_sum, self.correct,
                              torch.tensor(float(self.count), dtype=torch.float64,
                                           device=self.loss_sum.device)])
        loss_sum, correct, count = distributed.all_reduce_sum(values).tolist()
        return loss_sum, correct, int(count)


def _flush(pending: list[torch.Tensor], history: History, state: _RunState,
           optimizer: torch.optim.Optimizer, *, mixed: bool) -> None:
    """Read the pending step losses back and stop if one is not a finite number."""
    if not pending:
        return
    values = torch.stack(pending).tolist()
    first = state.step - len(values) + 1
    for offset, value in enumerate(values):
        if not math.isfinite(value):
            lr = optimizer.param_groups[0]["lr"]
            hint = "turn mixed precision off (mixed=False), " if mixed else ""
            raise NonFiniteLossError(
                f"the training loss became {value} at step {first + offset} (epoch "
                f"{state.epoch + 1}). Try a lower learning rate (now {lr:g}), check that the "
                f"inputs are normalised (mean about 0, std about 1), {hint}or clip "
                f"gradients (grad_clip=1.0).")
    history.step_loss.extend(values)
    pending.clear()


def _epoch_iterator(data, state: _RunState, saved: dict | None):
    """This epoch's batches, positioned where a checkpoint left off, and the random
    state at the epoch's start (which a checkpoint of a generic loader needs)."""
    if isinstance(data, GPULoader):
        return iter(data), None  # the loader's own state_dict carries the position
    if saved is None or state.batch == 0:
        epoch_rng = _rng_state()
        return iter(data), epoch_rng
    # A generic loader cannot jump: restore the random state of the epoch's start,
    # replay the batches already trained on, then restore the state at the checkpoint.
    _set_rng_state(saved["epoch_rng"])
    iterator = iter(data)
    for _ in range(state.batch):
        next(iterator)
    _set_rng_state(saved["rng"])
    return iterator, saved["epoch_rng"]


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                  int(np_state[2]), int(np_state[3]), float(np_state[4])),
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))


def _save_checkpoint(path: Path, model, optimizer, scheduler, scaler, data,
                     history: History, state: _RunState, epoch_rng: dict | None) -> None:
    if not distributed.is_main():
        return
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict(),
        "rng": _rng_state(),
        "epoch_rng": epoch_rng,
        "loader": data.state_dict() if isinstance(data, GPULoader) else None,
        "position": asdict(state),
        "history": history.to_dict(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _load_checkpoint(path: Path, model, optimizer, scheduler, scaler, data) -> dict:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise ValueError(f"fit: checkpoint {path} does not match this model or optimizer "
                         f"({err}). Delete it, pass another path, or resume=False.") from err
    if scheduler is not None and saved["scheduler"] is not None:
        scheduler.load_state_dict(saved["scheduler"])
    if saved["scaler"]:
        scaler.load_state_dict(saved["scaler"])
    if isinstance(data, GPULoader) and saved["loader"] is not None:
        data.load_state_dict(saved["loader"])
    _set_rng_state(saved["rng"])
    return saved


def _check_fit_args(model, optimizer, epochs, checkpoint_every, max_steps, scheduler_step):
    if not isinstance(model, nn.Module):
        raise TypeError(f"fit: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"fit: optimizer must be a torch.optim.Optimizer, "
                        f"got {type(optimizer).__name__}")
    for name, value in (("epochs", epochs), ("checkpoint_every", checkpoint_every),
                        ("max_steps", max_steps)):
        if value is None and name != "epochs":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"fit: {name} must be a positive int, got {value!r}")
    if scheduler_step not in ("step", "epoch"):
        raise ValueError(f"fit: scheduler_step must be 'step' or 'epoch', got {scheduler_step!r}")


def _plateau(scheduler) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _length(data) -> int | None:
    try:
        return len(data)
    except TypeError:
        return None


def _progress_bar(progress: bool, epochs: int, steps_per_epoch: int | None, done: int):
    if not progress or not distributed.is_main():
        return None
    from tqdm.auto import tqdm
    total = epochs * steps_per_epoch if steps_per_epoch else None
    return tqdm(total=total, initial=done, unit="step", dynamic_ncols=True)


def _postfix(state: _RunState, history: History, sums: _Sums | None) -> str:
    text = f"epoch {state.epoch + 1 if sums is not None else state.epoch}"
    if history.step_loss:
        text += f" loss {history.step_loss[-1]:.4f}"
    if history.train_acc and sums is None:
        text += f" acc {history.train_acc[-1]:.3f}"
    if history.val_acc and sums is None:
        text += f" val_acc {history.val_acc[-1]:.3f}"
    return text
