"""Comparing two models honestly: a validation split, seeds and paired differences.

Every comparison in the book follows the same recipe, and this module holds its parts:

- `validation_split` carves a validation set out of the *training* images, the same number
  of each class, so that settings (a learning rate, a number of epochs) are chosen and
  models compared without looking at the test images. The test set is used once, at the
  end, to report how the chosen model does on images nothing was tuned on.
- `over_seeds` repeats a run with several seeds. A seed fixes the initial weights and the
  order of the batches; the spread across seeds is the run-to-run noise any difference
  must rise above.
- `paired` compares two variants seed by seed. Runs that share a seed share their data
  order and, where the architectures allow, their initial weights, so the difference
  within a seed is less noisy than the difference between two averages. The verdict
  (`Paired.verdict`) is picked from the numbers: a lead is called only when a 95%
  t-interval of the mean paired difference excludes zero.
- `pick_learning_rate` tries a few learning rates and keeps the one with the best
  validation score, as each model deserves its own.
- `steps_to` reads off when a training curve first reaches a target, for "how much
  sooner" comparisons (AlexNet's ReLU against tanh, Krizhevsky et al., NeurIPS 2012, fig. 1);
  `error_curve` records such a curve with `labcode.train.fit`.
- `fit_best` trains until the validation accuracy stops improving (early stopping) and
  keeps the weights of the best epoch, so that two models are compared at convergence
  rather than at an arbitrary number of epochs.

Reference for the statistics: Student's t-distribution for a mean of a few paired
differences (e.g. Wasserman, "All of Statistics", 2004, ch. 10). Dietterich, "Approximate
statistical tests for comparing supervised classification learning algorithms" (Neural
Computation 1998) discusses why paired designs are used for comparing learners.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence, TypeVar

import numpy as np
import torch
from torch import nn

from labcode.data.offline import ImageSet

T = TypeVar("T")

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (no scipy needed).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t95(dof: int) -> float:
    """The two-sided 95% quantile of Student's t with `dof` degrees of freedom."""
    if isinstance(dof, bool) or not isinstance(dof, int) or dof < 1:
        raise ValueError(f"t95: degrees of freedom must be an int >= 1, got {dof!r}")
    return _T95[dof - 1] if dof <= len(_T95) else 1.96 + 2.4 / dof


def validation_split(data: ImageSet, fraction: float = 0.125, *,
                     seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Split training images into (train, validation), the same share of every class.

    The validation images are drawn at random (fixed by `seed`) within each class; both
    parts keep the original order of their images. The test set is never touched.

    Args:
        data: the training images, an ImageSet.
        fraction: share of each class that goes to validation, strictly between 0 and 1.
        seed: fixes which images are drawn.
    """
    if not isinstance(data, ImageSet):
        raise TypeError(f"validation_split: expected an ImageSet, got {type(data).__name__}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0 < fraction < 1:
        raise ValueError(f"validation_split: fraction must be a number in (0, 1), got {fraction!r}")
    generator = torch.Generator().manual_seed(seed)
    is_val = torch.zeros(len(data), dtype=torch.bool)
    for label in data.labels.unique():
        members = torch.nonzero(data.labels == label).flatten()
        n_val = round(fraction * len(members))
        if n_val == 0 or n_val == len(members):
            raise ValueError(
                f"validation_split: class {int(label)} has {len(members)} images; a fraction "
                f"of {fraction} leaves it no {'validation' if n_val == 0 else 'training'} image")
        pick = torch.randperm(len(members), generator=generator)[:n_val]
        is_val[members[pick]] = True
    return (ImageSet(data.images[~is_val], data.labels[~is_val], data.classes),
            ImageSet(data.images[is_val], data.labels[is_val], data.classes))


def over_seeds(run: Callable[[int], T], seeds: Iterable[int]) -> list[T]:
    """`[run(seed) for seed in seeds]`, checking that there is at least one seed."""
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"over_seeds: expected one or more int seeds, got {seeds!r}")
    return [run(seed) for seed in seeds]


@dataclass(frozen=True)
class Paired:
    """Differences a - b of two variants measured with the same seeds.

    `mean` and `std` (sample standard deviation, NaN for one seed) describe the
    per-seed differences; `half_width` is the half-width of their 95% t-interval.
    """

    a: np.ndarray
    b: np.ndarray

    @property
    def diffs(self) -> np.ndarray:
        return self.a - self.b

    @property
    def n(self) -> int:
        return len(self.a)

    @property
    def mean(self) -> float:
        return float(self.diffs.mean())

    @property
    def std(self) -> float:
        return float(self.diffs.std(ddof=1)) if self.n > 1 else math.nan

    @property
    def half_width(self) -> float:
        return t95(self.n - 1) * self.std / math.sqrt(self.n) if self.n > 1 else math.nan

    @property
    def wins(self) -> int:
        """Seeds on which a scored higher than b."""
        return int((self.diffs > 0).sum())

    def clear(self, min_seeds: int = 3) -> bool:
        """True when there are enough seeds and the 95% interval excludes zero."""
        return self.n >= min_seeds and abs(self.mean) > self.half_width

    def verdict(self, a_name: str, b_name: str, unit: str = "points",
                min_seeds: int = 3) -> str:
        """A sentence that follows the numbers: who leads, or that it cannot be told."""
        if self.n < min_seeds:
            return (f"{self.n} seed{'s' if self.n != 1 else ''} cannot decide between "
                    f"{a_name} and {b_name}")
        if not self.clear(min_seeds):
            return (f"no clear difference between {a_name} and {b_name}: the mean paired "
                    f"difference, {self.mean:+.2f} {unit}, is within its 95% interval "
                    f"of ±{self.half_width:.2f} around zero")
        leader, other = (a_name, b_name) if self.mean > 0 else (b_name, a_name)
        return (f"a clear lead for {leader} over {other}, {abs(self.mean):.2f} ± "
                f"{self.half_width:.2f} {unit} (95% interval over {self.n} seeds)")

    def __repr__(self) -> str:
        return (f"Paired(n={self.n}, mean={self.mean:+.3f}, std={self.std:.3f}, "
                f"95% half-width={self.half_width:.3f}, a wins {self.wins}/{self.n})")


def paired(a: Sequence[float], b: Sequence[float]) -> Paired:
    """Pair the scores of two variants seed by seed: a[i] and b[i] share seed i."""
    a_arr, b_arr = (np.asarray(v, dtype=float) for v in (a, b))
    if a_arr.ndim != 1 or b_arr.ndim != 1 or len(a_arr) != len(b_arr) or len(a_arr) == 0:
        raise ValueError("paired: expected two equally long, non-empty lists of scores (one "
                         f"per seed), got shapes {a_arr.shape} and {b_arr.shape}")
    if not (np.isfinite(a_arr).all() and np.isfinite(b_arr).all()):
        raise ValueError(f"paired: scores must be finite numbers, got {a_arr} and {b_arr}")
    return Paired(a_arr, b_arr)


def pick_learning_rate(score: Callable[[float], float],
                       learning_rates: Sequence[float]) -> tuple[float, dict[float, float]]:
    """Try each learning rate and keep the one whose validation score is highest.

    Args:
        score: trains a fresh model with the given learning rate and returns its score
            on the validation images (higher is better, e.g. accuracy).
        learning_rates: the candidates, each a positive number.

    Returns:
        (best learning rate, {learning rate: score}); on a tie the first candidate wins.
    """
    rates = list(learning_rates)
    if not rates or not all(isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0
                            for r in rates):
        raise ValueError(f"pick_learning_rate: expected positive learning rates, got {rates!r}")
    scores = {}
    for rate in rates:
        value = float(score(rate))
        scores[rate] = value if math.isfinite(value) else -math.inf  # a diverged run loses
    best = max(rates, key=lambda r: scores[r])
    return best, scores


def steps_to(steps: Sequence[float], errors: Sequence[float], target: float) -> float:
    """When a falling error curve first reaches `target`, interpolated between points.

    Args:
        steps: increasing positions of the measurements (steps, epochs, images seen).
        errors: the error measured at each position.
        target: the error to reach.

    Returns:
        The interpolated position, or NaN when the curve never reaches the target.
    """
    x, e = np.asarray(steps, dtype=float), np.asarray(errors, dtype=float)
    if x.ndim != 1 or x.shape != e.shape or len(x) == 0:
        raise ValueError("steps_to: expected two equally long, non-empty 1-D sequences, "
                         f"got shapes {x.shape} and {e.shape}")
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"steps_to: steps must increase, got {x}")
    below = np.nonzero(e <= target)[0]
    if len(below) == 0:
        return math.nan
    i = int(below[0])
    if i == 0:
        return float(x[0])
    # straight line between the last point above the target and the first at or below it
    return float(np.interp(target, [e[i], e[i - 1]], [x[i], x[i - 1]]))


def error_curve(model: nn.Module, train_data: Iterable, probe: Iterable, *,
                optimizer: torch.optim.Optimizer, steps: int, every: int,
                stop_below: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Train `model` and measure its error on `probe` every `every` optimizer steps.

    Args:
        model, train_data, optimizer: as for `labcode.train.fit`.
        probe: the images the error is measured on (e.g. a fixed sample of the training
            images, without augmentation).
        steps: optimizer steps in all.
        every: steps between two measurements.
        stop_below: stop early once the error is at or below this value.

    Returns:
        (steps taken at each measurement, error at each measurement).
    """
    from labcode.train import evaluate, fit

    for name, value in (("steps", steps), ("every", every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"error_curve: {name} must be a positive int, got {value!r}")
    done, points, errors = 0, [], []
    while done < steps:
        chunk = min(every, steps - done)
        fit(model, train_data, epochs=1, max_steps=chunk, optimizer=optimizer, progress=False)
        done += chunk
        points.append(done)
        errors.append(1.0 - evaluate(model, probe)[1])
        if stop_below is not None and errors[-1] <= stop_below:
            break
    return np.array(points, dtype=float), np.array(errors)


def fit_best(model: nn.Module, train_data: Iterable, val_data: Iterable, *,
             optimizer: torch.optim.Optimizer, max_epochs: int,
             patience: int) -> dict[str, list[float] | int | float]:
    """Train one epoch at a time until the validation accuracy has not improved for
    `patience` epochs (or `max_epochs` is reached), then restore the best epoch's weights.

    Returns:
        {"train_acc": per epoch, measured during training; "val_acc": per epoch;
         "best_epoch": 1-based; "best_val_acc": the validation accuracy of the kept weights}.
    """
    from labcode.train import evaluate, fit

    for name, value in (("max_epochs", max_epochs), ("patience", patience)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"fit_best: {name} must be a positive int, got {value!r}")
    train_acc, val_acc, best_state, best_epoch = [], [], None, 0
    for epoch in range(1, max_epochs + 1):
        history = fit(model, train_data, epochs=1, optimizer=optimizer, progress=False)
        train_acc.append(history.train_acc[-1])
        val_acc.append(evaluate(model, val_data)[1])
        if best_state is None or val_acc[-1] > val_acc[best_epoch - 1]:
            best_epoch = epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    return {"train_acc": train_acc, "val_acc": val_acc, "best_epoch": best_epoch,
            "best_val_acc": val_acc[best_epoch - 1]}
