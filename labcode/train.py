"""Training and evaluation used by every chapter: `fit`, `evaluate`, `predict`.

`fit` is mini-batch stochastic gradient descent as every paper in this book trained its
models (AlexNet: Krizhevsky, Sutskever & Hinton, NeurIPS 2012, sec. 5), written as one
readable loop: for every batch a train step (forward pass, loss, backward pass,
optimizer step), and after every epoch an end-of-epoch step (record, validate, save).
Around that loop it adds what a long run on a shared GPU needs:

- mixed precision (Micikevicius et al., "Mixed Precision Training", ICLR 2018): the
  forward pass in bfloat16, or in float16 with a gradient scaler on older GPUs, chosen
  by `labcode.device.precision`;
- channels-last memory layout for convolutional networks on CUDA;
- a seed that makes a CPU run repeat exactly;
- checkpoints (`labcode.checkpoint`) written atomically at the end of each epoch or
  every N steps, holding everything needed to resume, so a resumed run ends with the
  same weights as an uninterrupted one;
- a stop at the first step whose loss is not a finite number, before the optimizer
  applies it, with an error that names the step;
- DistributedDataParallel when started with torchrun (see `labcode.distributed`);
- progressive learning (`labcode.progressive`, EfficientNetV2's Algorithm 1): the
  image size and the regularisation set anew at the start of every epoch.

The training data can be a `labcode.data.GPULoader`, a torch DataLoader, or any
iterable of (inputs, labels) batches.
"""
from __future__ import annotations

import math
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labcode import distributed
from labcode.checkpoint import Position, epoch_batches, restore_training, save_training
from labcode.data.loader import GPULoader
from labcode.device import Precision, precision
from labcode.progressive import ProgressiveSchedule

SYNC_EVERY = 25  # steps between reading the losses back from the GPU (each read waits)


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
        progressive: ProgressiveSchedule | None = None, progress: bool = True) -> History:
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
        progressive: a ProgressiveSchedule that sets the GPULoader's image size and the
            regularisation at the start of every epoch, or None.
        progress: show a tqdm progress bar.
    """
    _check_fit_args(model, optimizer, epochs, checkpoint_every, max_steps, scheduler_step)
    run = _start_run(model, train_data, val_data=val_data, optimizer=optimizer,
                     scheduler=scheduler, scheduler_step=scheduler_step, loss_fn=loss_fn,
                     device=device, mixed=mixed, channels_last=channels_last,
                     compile=compile, seed=seed, checkpoint=checkpoint,
                     checkpoint_every=checkpoint_every, resume=resume,
                     max_steps=max_steps, grad_clip=grad_clip,
                     progressive=progressive, epochs=epochs)
    run.bar = _progress_bar(progress, epochs, _length(train_data), run.position.step)
    try:
        while run.position.epoch < epochs and not _max_steps_done(run):
            for x, y in _start_epoch(run):
                _train_step(run, x, y)
                if _after_step(run):  # read losses back, save when due; True at max_steps
                    return run.history
            _end_of_epoch(run)
    finally:
        if run.bar is not None:
            run.bar.close()
    return run.history


def _train_step(run: _Run, x: torch.Tensor, y: torch.Tensor) -> None:
    """One optimizer step on one batch: forward pass, loss, backward pass, update."""
    x = x.to(run.device, non_blocking=True)
    y = y.to(run.device, non_blocking=True)
    if run.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    with run.prec.autocast():
        out = run.net(x)
        loss = run.loss_fn(out, y)
    if loss.dim() != 0:
        raise ValueError(f"fit: loss_fn must return a scalar, got shape {tuple(loss.shape)}")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if run.grad_clip is not None:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), run.grad_clip)
    run.guard.step(loss.detach(), run.position)  # the update, unless the loss is not finite
    run.scaler.update()
    if run.scheduler is not None and run.scheduler_step == "step" \
            and not _plateau(run.scheduler):
        run.scheduler.step()
    run.sums.add(loss.detach(), out.detach(), y)
    run.pending.append(loss.detach().float())
    run.position.step += 1
    run.position.batch += 1


def _end_of_epoch(run: _Run) -> None:
    """Record the epoch's loss and accuracy, validate, step a per-epoch scheduler, save."""
    history, position, scheduler = run.history, run.position, run.scheduler
    _read_losses(run)
    loss_sum, correct, count = run.sums.totals()
    history.train_loss.append(loss_sum / max(count, 1))
    history.train_acc.append(correct / max(count, 1) if run.sums.classifying else math.nan)
    if run.val_data is not None:
        val_loss, val_acc = evaluate(run.model, run.val_data, device=run.device,
                                     loss_fn=run.loss_fn, mixed=run.mixed)
        history.val_loss.append(val_loss)
        history.val_acc.append(val_acc)
    if scheduler is not None and _plateau(scheduler):
        scheduler.step(history.val_loss[-1] if run.val_data is not None
                       else history.train_loss[-1])
    elif scheduler is not None and run.scheduler_step == "epoch":
        scheduler.step()
    history.lr.append(float(run.optimizer.param_groups[0]["lr"]))
    history.epoch_time.append(time.perf_counter() - run.epoch_start)
    position.epoch += 1
    position.batch = 0
    position.elapsed = 0.0
    position.partial = None
    if run.bar is not None:
        run.bar.set_postfix_str(_postfix(position, history, None), refresh=True)
    if run.path is not None:
        _save(run, epoch_rng=None)


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

class _FiniteGuard:
    """Applies the optimizer step only while the loss is a finite number.

    Checking a loss on the host makes the host wait for the device. On a CPU that is
    free, so every step's loss is checked before its update and the error is raised
    at once. On CUDA the wait stalls the GPU at every step, so where the optimizer can
    skip its own update on the device (torch's fused Adam, AdamW, SGD, ...: the
    `found_inf` tensor GradScaler hands them), no read-back is needed: a flag that
    turns on at the first non-finite loss and stays on goes to the optimizer, which
    then changes nothing, and the error is raised when the losses are next read back
    (every SYNC_EVERY steps), naming the first bad step; the weights are those from
    before it. Other optimizers on CUDA, and float16 with a GradScaler (which already
    waits every step for a non-fused optimizer), get the per-step check, done after
    the backward pass so the GPU has the work queued; for torch's Adam, AdamW and SGD
    built without fused=True, fit warns once per run and names the fix. Under
    torch.distributed the flag is summed over all processes, so that every process stops
    at the same step.
    """

    def __init__(self, device: torch.device, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, mixed: bool):
        self.optimizer, self.scaler, self.mixed = optimizer, scaler, mixed
        self.found_inf = None  # float32 (1,) on the device when the update skips there
        if _skips_on_device(device, optimizer, scaler):
            self.found_inf = torch.zeros(1, dtype=torch.float32, device=device)
        elif device.type == "cuda" and not scaler.is_enabled() and type(optimizer) in FUSABLE:
            warnings.warn(
                f"fit: {type(optimizer).__name__} without fused=True cannot skip a step on the "
                f"GPU, so every step's loss is read back and the GPU waits each time; build it "
                f"with torch.optim.{type(optimizer).__name__}(..., fused=True) to avoid that",
                stacklevel=4)

    def step(self, loss: torch.Tensor, position: Position) -> None:
        bad = (~torch.isfinite(loss)).float().reshape(1)
        if distributed.is_distributed():
            bad = distributed.all_reduce_sum(bad)
        if self.found_inf is None:
            if bad.item():  # waits for the device
                value = loss.item()
                raise _non_finite_error(None if math.isfinite(value) else value,
                                        position.step + 1, position.epoch,
                                        self.optimizer, self.mixed)
            self.scaler.step(self.optimizer)
            return
        torch.maximum(self.found_inf, bad.clamp(max=1), out=self.found_inf)
        self.optimizer.found_inf, self.optimizer.grad_scale = self.found_inf, None
        try:
            self.optimizer.step()
        finally:
            del self.optimizer.found_inf, self.optimizer.grad_scale


# torch's optimizers that take fused=True (and with it GradScaler's found_inf)
FUSABLE = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)


def _skips_on_device(device: torch.device, optimizer: torch.optim.Optimizer,
                     scaler: torch.amp.GradScaler) -> bool:
    return (device.type == "cuda" and not scaler.is_enabled()
            and getattr(optimizer, "_step_supports_amp_scaling", False))


def _non_finite_error(value: float | None, step: int, epoch: int,
                      optimizer: torch.optim.Optimizer, mixed: bool) -> NonFiniteLossError:
    # value None: this process's loss was finite, another process's was not.
    became = f"became {value}" if value is not None else \
        "became NaN or infinite in another process"
    lr = optimizer.param_groups[0]["lr"]
    hint = "turn mixed precision off (mixed=False), " if mixed else ""
    return NonFiniteLossError(
        f"the training loss {became} at step {step} (epoch {epoch + 1}); the optimizer did "
        f"not apply it. Try a lower learning rate (now {lr:g}), check that the inputs are "
        f"normalised (mean about 0, std about 1), {hint}or clip gradients (grad_clip=1.0).")


@dataclass
class _Run:
    """Everything one call of `fit` works with, set up by `_start_run`."""

    model: nn.Module
    net: nn.Module  # the model as called: wrapped for DDP and torch.compile
    data: Iterable
    val_data: Iterable | None
    optimizer: torch.optim.Optimizer
    scheduler: object
    scheduler_step: str
    loss_fn: Callable
    device: torch.device
    prec: Precision
    mixed: bool
    channels_last: bool
    scaler: torch.amp.GradScaler
    guard: _FiniteGuard
    grad_clip: float | None
    path: Path | None
    checkpoint_every: int | None
    max_steps: int | None
    history: History
    position: Position
    saved: dict | None  # the checkpoint resumed from, until its epoch has started
    progressive: ProgressiveSchedule | None
    epochs: int
    bar: object = None
    # The current epoch: sums kept on the device, step losses not yet read back, the
    # random state at its start, and its start time.
    sums: _Sums | None = None
    pending: list[torch.Tensor] = field(default_factory=list)
    epoch_rng: dict | None = None
    epoch_start: float = 0.0


def _start_run(model: nn.Module, data: Iterable, *, val_data, optimizer, scheduler,
               scheduler_step, loss_fn, device, mixed, channels_last, compile, seed,
               checkpoint, checkpoint_every, resume, max_steps, grad_clip, progressive,
               epochs) -> _Run:
    """Pick the device and precision, seed, move the model, resume from a checkpoint,
    and wrap the model for DistributedDataParallel and torch.compile."""
    if progressive is not None:
        if not isinstance(progressive, ProgressiveSchedule):
            raise TypeError(f"fit: progressive must be a ProgressiveSchedule or None, "
                            f"got {type(progressive).__name__}")
        progressive.check(epochs, model, data)
    is_distributed = distributed.setup()
    device = distributed.default_device() if device is None else torch.device(device)
    prec = precision(device, mixed)
    if seed is not None:
        seed_everything(seed)
        if isinstance(data, GPULoader):
            data.manual_seed(seed)
    if channels_last is None:
        channels_last = device.type == "cuda" and any(
            isinstance(m, nn.Conv2d) for m in model.modules())
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)
    scaler = prec.scaler()
    path = Path(checkpoint) if checkpoint is not None else None
    history, position, saved = History(), Position(), None
    if path is not None and resume and path.exists():
        saved = restore_training(path, model, optimizer, scheduler, scaler, data)
        history = History.from_dict(saved["history"])
        position = Position(**saved["position"])
    net = model
    if is_distributed:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        net = torch.compile(net)
    return _Run(
        model=model, net=net, data=data, val_data=val_data, optimizer=optimizer,
        scheduler=scheduler, scheduler_step=scheduler_step,
        loss_fn=F.cross_entropy if loss_fn is None else loss_fn, device=device, prec=prec,
        mixed=mixed, channels_last=channels_last, scaler=scaler,
        guard=_FiniteGuard(device, optimizer, scaler, mixed=prec.dtype is not None),
        grad_clip=grad_clip, path=path, checkpoint_every=checkpoint_every,
        max_steps=max_steps, history=history, position=position, saved=saved,
        progressive=progressive, epochs=epochs)


def _start_epoch(run: _Run) -> Iterator:
    """This epoch's batches (from where a checkpoint left off), with fresh sums."""
    run.net.train()
    if run.progressive is not None:  # this epoch's image size and regularisation
        run.progressive.apply(run.position.epoch, run.epochs, run.model, run.data)
    sampler = getattr(run.data, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(run.position.epoch)
    batches, run.epoch_rng = epoch_batches(run.data, run.position, run.saved)
    run.saved = None
    run.epoch_start = time.perf_counter() - run.position.elapsed
    run.sums = _Sums(run.device, run.position.partial)
    run.pending = []
    return batches


def _after_step(run: _Run) -> bool:
    """Read the losses back and save a checkpoint when due; True once max_steps are done."""
    position = run.position
    if run.bar is not None:
        run.bar.update(1)
    stop = _max_steps_done(run)
    due = run.checkpoint_every is not None and position.step % run.checkpoint_every == 0
    if len(run.pending) >= SYNC_EVERY or stop or due:
        _read_losses(run)
    if run.path is not None and (due or stop):
        position.partial = run.sums.state()
        position.elapsed = time.perf_counter() - run.epoch_start
        _save(run, epoch_rng=run.epoch_rng)
    return stop


def _max_steps_done(run: _Run) -> bool:
    return run.max_steps is not None and run.position.step >= run.max_steps


def _read_losses(run: _Run) -> None:
    """Read the pending step losses back (one wait for the device), record them, and
    stop if one is not a finite number."""
    flag = [] if run.guard.found_inf is None else [run.guard.found_inf[0]]
    if run.pending:
        read = torch.stack(run.pending + flag).tolist()  # one wait
        values = read[:len(run.pending)]
        first = run.position.step - len(values) + 1
        for offset, value in enumerate(values):
            if not math.isfinite(value):
                raise _non_finite_error(value, first + offset, run.position.epoch,
                                        run.optimizer, run.guard.mixed)
        if flag and read[-1] > 0:  # not finite in another process
            raise _non_finite_error(None, first, run.position.epoch, run.optimizer,
                                    run.guard.mixed)
        run.history.step_loss.extend(values)
        run.pending.clear()
    if run.bar is not None:
        run.bar.set_postfix_str(_postfix(run.position, run.history, run.sums), refresh=False)


def _save(run: _Run, epoch_rng: dict | None) -> None:
    save_training(run.path, model=run.model, optimizer=run.optimizer, scheduler=run.scheduler,
                  scaler=run.scaler, data=run.data, history=run.history.to_dict(),
                  position=run.position, epoch_rng=epoch_rng)


class _Sums:
    """Loss and correct predictions summed on the device (no waiting on a GPU), and the
    sample count on the host."""

    def __init__(self, device: torch.device, partial: list | None = None):
        loss_sum, correct, count = partial if partial else (0.0, 0.0, 0)
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
        loss_sum, correct = torch.stack([self.loss_sum, self.correct]).tolist()  # one wait
        return [loss_sum, correct, self.count]

    def totals(self) -> tuple[float, float, int]:
        values = torch.stack([self.loss_sum, self.correct,
                              torch.tensor(float(self.count), dtype=torch.float64,
                                           device=self.loss_sum.device)])
        loss_sum, correct, count = distributed.all_reduce_sum(values).tolist()
        return loss_sum, correct, int(count)


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


def _postfix(state: Position, history: History, sums: _Sums | None) -> str:
    text = f"epoch {state.epoch + 1 if sums is not None else state.epoch}"
    if history.step_loss:
        text += f" loss {history.step_loss[-1]:.4f}"
    if history.train_acc and sums is None:
        text += f" acc {history.train_acc[-1]:.3f}"
    if history.val_acc and sums is None:
        text += f" val_acc {history.val_acc[-1]:.3f}"
    return text
