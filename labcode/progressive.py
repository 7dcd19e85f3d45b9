"""Progressive learning with adaptive regularisation, EfficientNetV2's training schedule.

Tan & Le, "EfficientNetV2: Smaller Models and Faster Training" (ICML 2021, arXiv
2104.00298), section 4 and Algorithm 1. Training is cut into M stages of equal length.
Early stages see small images, whose steps are cheap; later stages see larger ones. The
paper's point is that the regularisation has to grow with the image size: a network
looking at small images has less to overfit on and learns best with weak regularisation,
while large images call for strong dropout and augmentation. So every regularisation
strength rises together with the image size. Stage i of M (i = 0 .. M-1) uses

    image size        S_i   = S_0   + (S_e   - S_0)   * i / (M - 1)
    regularisation k  phi_i = phi_0 + (phi_e - phi_0) * i / (M - 1)

from the initial values (S_0, phi_0) to the final ones (S_e, phi_e). The paper
interpolates dropout, RandAugment's magnitude and mixup's ratio this way. Here the
regularisers are those the book's small experiments use: the dropout before the
classifier (every `nn.Dropout` in the model) and the largest random shift of the
loader's crop (`GPULoader.pad`), which stands in for RandAugment's magnitude.

`ProgressiveSchedule` holds the rule; `labcode.train.fit(..., progressive=schedule)`
applies it at the start of every epoch: the loader's `image_size` and `pad`, and the
model's dropout. The stage of epoch e out of E is floor(e * M / E), so each stage gets
E / M epochs (the paper's N / M steps).
"""
from __future__ import annotations

from dataclasses import dataclass
from torch import nn


@dataclass(frozen=True)
class Stage:
    """The settings of one stage, and the epochs it covers."""

    index: int
    epochs: range
    image_size: int
    dropout: float | None  # None: the model's dropout is left alone
    pad: int | None        # None: the loader's crop is left alone


@dataclass(frozen=True)
class ProgressiveSchedule:
    """Image size and regularisation that grow together over `stages` stages.

    Args:
        stages: the number of stages M (1 trains at the final values throughout).
        image_size: (initial, final) side of the training images, in pixels.
        dropout: (initial, final) dropout probability, or None to leave it unchanged.
        pad: (initial, final) largest random shift of the crop in pixels, or None.
    """

    stages: int
    image_size: tuple[int, int]
    dropout: tuple[float, float] | None = None
    pad: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stages, bool) or not isinstance(self.stages, int) or self.stages < 1:
            raise ValueError(f"ProgressiveSchedule: stages must be an int >= 1, "
                             f"got {self.stages!r}")
        _check_pair("image_size", self.image_size, int, low=1)
        if self.dropout is not None:
            _check_pair("dropout", self.dropout, (int, float), low=0, below=1)
        if self.pad is not None:
            _check_pair("pad", self.pad, int, low=0)

    def fraction(self, stage: int) -> float:
        """i / (M - 1): how far stage i is from the first stage to the last (1 if M = 1)."""
        if isinstance(stage, bool) or not isinstance(stage, int) \
                or not 0 <= stage < self.stages:
            raise ValueError(f"ProgressiveSchedule: stage must be an int in "
                             f"0..{self.stages - 1}, got {stage!r}")
        return 1.0 if self.stages == 1 else stage / (self.stages - 1)

    def stage_of(self, epoch: int, epochs: int) -> int:
        """The stage that epoch `epoch` (counted from 0) of `epochs` belongs to."""
        _check_epochs(epochs, self.stages)
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < epochs:
            raise ValueError(f"ProgressiveSchedule: epoch must be an int in 0..{epochs - 1}, "
                             f"got {epoch!r}")
        return epoch * self.stages // epochs

    def stage(self, index: int, epochs: int) -> Stage:
        """Stage `index`'s settings (Algorithm 1's interpolation) and its epochs."""
        t = self.fraction(index)
        _check_epochs(epochs, self.stages)
        first = -(-index * epochs // self.stages)           # ceil(index * E / M)
        last = -(-(index + 1) * epochs // self.stages)
        return Stage(index=index, epochs=range(first, last),
                     image_size=round(_between(self.image_size, t)),
                     dropout=None if self.dropout is None else _between(self.dropout, t),
                     pad=None if self.pad is None else round(_between(self.pad, t)))

    def stages_for(self, epochs: int) -> list[Stage]:
        """Every stage of a run of `epochs` epochs, in order."""
        return [self.stage(i, epochs) for i in range(self.stages)]

    def check(self, epochs: int, model: nn.Module, data: object) -> None:
        """Fail with a clear message if this schedule cannot drive `model` and `data`."""
        _check_epochs(epochs, self.stages)
        if not hasattr(type(data), "image_size"):
            raise TypeError(f"progressive learning changes the image size, so the training "
                            f"data must be a labcode.data.GPULoader, got {type(data).__name__}")
        if self.dropout is not None and not _dropouts(model):
            raise ValueError(f"progressive learning: the schedule sets dropout, but "
                             f"{type(model).__name__} has no nn.Dropout module")
        if self.pad is not None:
            if data.augment not in ("crop", "crop_flip"):
                raise ValueError(f"progressive learning: the schedule sets the crop's pad, so "
                                 f"the loader needs augment 'crop' or 'crop_flip', got "
                                 f"{data.augment!r}")
            side = min(data.images.shape[-2:])
            if data.padding_mode == "reflect" and max(self.pad) >= side:
                raise ValueError(f"progressive learning: reflect padding needs pad < {side}, "
                                 f"the stored image size; the schedule goes up to "
                                 f"{max(self.pad)}")

    def apply(self, epoch: int, epochs: int, model: nn.Module, data: object) -> Stage:
        """Set the loader's image size and pad and the model's dropout for `epoch`."""
        stage = self.stage(self.stage_of(epoch, epochs), epochs)
        data.image_size = stage.image_size
        if stage.pad is not None:
            data.pad = stage.pad
        if stage.dropout is not None:
            for module in _dropouts(model):
                module.p = stage.dropout
        return stage

    def table(self, epochs: int) -> str:
        """One line per stage: its epochs, image size and regularisation."""
        lines = []
        for s in self.stages_for(epochs):
            line = (f"stage {s.index + 1}: epochs {s.epochs.start + 1}-{s.epochs.stop}, "
                    f"images {s.image_size}x{s.image_size}")
            if s.dropout is not None:
                line += f", dropout {s.dropout:.2f}"
            if s.pad is not None:
                line += f", shift up to {s.pad} px"
            lines.append(line)
        return "\n".join(lines)

    def plot(self, epochs: int):
        """Image size and each regularisation against the epoch (a matplotlib Figure)."""
        import matplotlib.pyplot as plt

        rows = [("image side (pixels)", [s.image_size for s in self.stages_for(epochs)])]
        if self.dropout is not None:
            rows.append(("dropout", [s.dropout for s in self.stages_for(epochs)]))
        if self.pad is not None:
            rows.append(("largest shift (pixels)", [s.pad for s in self.stages_for(epochs)]))
        fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 2.6), squeeze=False)
        for ax, (label, values) in zip(axes[0], rows):
            steps = [v for s, v in zip(self.stages_for(epochs), values) for _ in s.epochs]
            ax.step(range(1, epochs + 1), steps, where="mid", marker="o")
            ax.set_xlabel("epoch")
            ax.set_title(label, fontsize=10)
            ax.set_xticks(range(1, epochs + 1))
        fig.tight_layout()
        return fig


def _between(pair: tuple[float, float], t: float) -> float:
    start, end = pair
    return start + (end - start) * t


def _dropouts(model: nn.Module) -> list[nn.Dropout]:
    return [m for m in model.modules() if isinstance(m, nn.Dropout)]


def _check_pair(name: str, pair: object, kinds, *, low: float, below: float | None = None
                ) -> None:
    ok = isinstance(pair, (tuple, list)) and len(pair) == 2 and all(
        isinstance(v, kinds) and not isinstance(v, bool) and v >= low
        and (below is None or v < below) for v in pair)
    if not ok:
        kind = "ints" if kinds is int else "numbers"
        limit = f">= {low}" + ("" if below is None else f" and < {below}")
        raise ValueError(f"ProgressiveSchedule: {name} must be an (initial, final) pair of "
                         f"{kind} {limit}, got {pair!r}")


def _check_epochs(epochs: int, stages: int) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < stages:
        raise ValueError(f"progressive learning: {stages} stages need at least {stages} "
                         f"epochs (a whole number), got {epochs!r}")

