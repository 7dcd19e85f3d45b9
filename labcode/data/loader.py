"""Feeding a GPU: the whole data set on the device, batches and augmentation in bulk.

A torch DataLoader with per-sample transforms spends its time in Python: one crop and
one flip per image, then a copy to the GPU. For data sets that fit in GPU memory
(CIFAR-10 is 150 MB as uint8) it is much faster to keep every image on the device as
uint8 and do the work for a whole batch at once, as the CIFAR-10 speed records do
(Keller Jordan, github.com/KellerJordan/cifar10-airbench): a permutation drawn on the
device, a random crop with padding and a horizontal flip for all images of the batch in
one indexing operation, then conversion to float and normalisation. `GPULoader` does
this; the same code runs on a CPU.

Under torch.distributed every process holds the data, draws the same permutation (same
seed) and the same augmentation for the global batch, and takes its own slice of it, so
N processes with batch B see exactly what one process with batch N*B would see.

`make_dataloader` builds an ordinary torch DataLoader with a safe default for
`num_workers`; `labcode.train.fit` accepts either, or any iterable of (x, y) batches.
"""
from __future__ import annotations

import os
import sys
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from labcode.data.offline import ImageSet

AUGMENTATIONS = (None, "crop_flip", "crop", "flip")


class GPULoader:
    """Batches from a data set held on the device as uint8, augmented in bulk.

    Iterating yields (x, y): x float (B, C, H, W) normalised with `mean` and `std`,
    y int64 (B,), both on `device`. `state_dict()` and `load_state_dict()` save and
    restore the position inside an epoch and the random generator, so a training run
    can resume exactly.

    Args:
        images: uint8 (N, C, H, W) with values 0-255, or float in [0, 1]; or an ImageSet,
            in which case `labels` is taken from it.
        labels: int (N,) class indices.
        batch_size: images per batch in this process.
        shuffle: draw a new permutation every epoch.
        augment: None, "crop_flip", "crop" or "flip" (random crop after padding by `pad`,
            random horizontal flip with probability 1/2).
        pad: padding for the random crop, in pixels on each side.
        padding_mode: "reflect" (mirror the border, as torch's reflect padding) or "zeros".
        device: where the data lives; None picks the training device.
        drop_last: drop a final batch smaller than `batch_size`.
        seed: seed of the loader's own random generator; None draws one at random.
        mean, std: per-channel statistics in [0, 1] units for normalisation; None computes
            them from `images`. Pass the training set's `loader.mean, loader.std` to the
            test set's loader.
        rank, world_size: this process's share under torch.distributed; None reads them
            from the initialised process group or the WORLD_SIZE/RANK variables.
        image_size: resize every batch to image_size x image_size (bilinear, antialiased)
            after the augmentation; None keeps the stored size. Can be changed between
            epochs (`loader.image_size = 20`), as progressive learning does.
    """

    def __init__(self, images: torch.Tensor | ImageSet, labels: torch.Tensor | None = None,
                 batch_size: int = 128, *, shuffle: bool = True, augment: str | None = None,
                 pad: int = 4, padding_mode: str = "reflect",
                 device: torch.device | str | None = None, drop_last: bool = False,
                 seed: int | None = None, mean: float | Sequence[float] | None = None,
                 std: float | Sequence[float] | None = None, rank: int | None = None,
                 world_size: int | None = None, image_size: int | None = None) -> None:
        if isinstance(images, ImageSet):
            if labels is not None:
                raise TypeError("GPULoader: pass either an ImageSet or images and labels, not both")
            images, labels = images.images, images.labels
        _check_data(images, labels)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"GPULoader: batch_size must be a positive int, got {batch_size!r}")
        if augment not in AUGMENTATIONS:
            raise ValueError(f"GPULoader: augment must be one of {AUGMENTATIONS}, got {augment!r}")
        if padding_mode not in ("reflect", "zeros"):
            raise ValueError(
                f"GPULoader: padding_mode must be 'reflect' or 'zeros', got {padding_mode!r}")
        height, width = images.shape[-2:]
        if augment in ("crop_flip", "crop"):
            if not isinstance(pad, int) or pad < 0:
                raise ValueError(f"GPULoader: pad must be a non-negative int, got {pad!r}")
            if padding_mode == "reflect" and pad >= min(height, width):
                raise ValueError(f"GPULoader: reflect padding needs pad < image size "
                                 f"{min(height, width)}, got pad={pad}")
        if device is None:
            from labcode.distributed import default_device
            device = default_device()
        self.device = torch.device(device)
        self.images = images.to(self.device)  # (N, C, H, W), kept uint8: 4x less memory
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.pad = pad
        self.padding_mode = padding_mode
        self.drop_last = drop_last
        self.rank, self.world_size = rank, world_size
        self.image_size = image_size
        channels = images.shape[1]
        self.mean = _channel_stats(mean, channels, "mean") if mean is not None else None
        self.std = _channel_stats(std, channels, "std") if std is not None else None
        if self.mean is None or self.std is None:
            m, s = _dataset_stats(self.images)
            self.mean = self.mean or m
            self.std = self.std or s
        if any(s <= 0 for s in self.std):
            raise ValueError(f"GPULoader: std must be positive, got {self.std}")
        scale = 255.0 if self.images.dtype == torch.uint8 else 1.0
        shape = (1, channels, 1, 1)
        self._mean = torch.tensor(self.mean, device=self.device).view(shape) * scale
        self._inv_std = 1.0 / (torch.tensor(self.std, device=self.device).view(shape) * scale)
        self.generator = torch.Generator(device=self.device)
        self.manual_seed(seed if seed is not None else int(torch.randint(2**62, ()).item()))
        self._perm: torch.Tensor | None = None   # the current epoch's permutation
        self._pos = 0                            # batches of it already yielded
        self._resume: tuple[torch.Tensor, int] | None = None

    @property
    def image_size(self) -> int | None:
        """Side of the square batches yielded, or None for the stored images' size."""
        return self._image_size

    @image_size.setter
    def image_size(self, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"GPULoader: image_size must be a positive int or None, "
                             f"got {value!r}")
        self._image_size = value

    # ------------------------------------------------------------ iteration

    def manual_seed(self, seed: int) -> None:
        """Reseed the loader's generator (shuffling and augmentation)."""
        self.generator.manual_seed(seed)

    def shard(self) -> tuple[int, int]:
        """(rank, world_size) this loader serves."""
        if self.rank is not None and self.world_size is not None:
            return self.rank, self.world_size
        from labcode.distributed import rank_and_world
        return rank_and_world()

    def __len__(self) -> int:
        _, world = self.shard()
        return self._steps(len(self.labels), self.batch_size * world, world)

    def _steps(self, n: int, global_batch: int, world: int) -> int:
        return n // global_batch if self.drop_last else _ceil_steps(n, global_batch, world)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rank, world = self.shard()
        n = len(self.labels)
        global_batch = self.batch_size * world
        steps = self._steps(n, global_batch, world)
        if self._resume is not None:
            perm, start = self._resume
            self._resume = None
        elif self.shuffle:
            perm = torch.randperm(n, generator=self.generator, device=self.device)
            start = 0
        else:
            perm = torch.arange(n, device=self.device)
            start = 0
        self._perm = perm
        for step in range(start, steps):
            chosen = perm[step * global_batch:(step + 1) * global_batch]
            # Draw the augmentation for the whole global batch, so that every process
            # advances its generator alike, then keep this process's slice.
            dy, dx, flip = self._draw(len(chosen))
            mine = torch.tensor_split(torch.arange(len(chosen), device=self.device), world)[rank]
            index = chosen[mine]
            x = self.images[index]  # (B, C, H, W) uint8
            if self.augment is not None:
                x = crop_flip(x, dy[mine] if dy is not None else None,
                              dx[mine] if dx is not None else None,
                              flip[mine] if flip is not None else None,
                              pad=self.pad, padding_mode=self.padding_mode)
            x = (x.float() - self._mean) * self._inv_std
            if self._image_size is not None and x.shape[-2:] != (self._image_size,) * 2:
                x = F.interpolate(x, size=(self._image_size, self._image_size),
                                  mode="bilinear", antialias=True, align_corners=False)
            self._pos = step + 1
            yield x, self.labels[index]
        self._perm, self._pos = None, 0

    def _draw(self, count: int):
        dy = dx = flip = None
        if self.augment in ("crop_flip", "crop") and self.pad > 0:
            high = 2 * self.pad + 1
            dy = torch.randint(high, (count,), generator=self.generator, device=self.device)
            dx = torch.randint(high, (count,), generator=self.generator, device=self.device)
        if self.augment in ("crop_flip", "flip"):
            flip = torch.rand(count, generator=self.generator, device=self.device) < 0.5
        return dy, dx, flip

    # ------------------------------------------------------------ resuming

    def state_dict(self) -> dict:
        """The generator state and the position inside the current epoch."""
        return {
            "generator": self.generator.get_state(),
            "perm": None if self._perm is None else self._perm.cpu(),
            "pos": self._pos,
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        if state["perm"] is not None:
            self._resume = (state["perm"].to(self.device), state["pos"])
        else:
            self._resume = None
        self._perm, self._pos = None, 0

    def __repr__(self) -> str:
        return (f"GPULoader({len(self.labels)} images {tuple(self.images.shape[1:])} "
                f"{self.images.dtype}, batch_size={self.batch_size}, augment={self.augment!r}, "
                f"device={self.device})")


def _ceil_steps(n: int, global_batch: int, world: int) -> int:
    full, rest = divmod(n, global_batch)
    # A last batch too small to give every process at least one image is dropped.
    return full + (1 if rest >= world else 0)


def crop_flip(x: torch.Tensor, dy: torch.Tensor | None, dx: torch.Tensor | None,
              flip: torch.Tensor | None, *, pad: int, padding_mode: str = "reflect"
              ) -> torch.Tensor:
    """Random crop after padding, and horizontal flip, for a whole batch at once.

    Sample i is shifted so that its top-left corner comes from (dy[i], dx[i]) of the image
    padded by `pad` on every side, then mirrored left-right where flip[i] is True. Done as
    one gather with per-sample row and column indices: no padded copy, no Python loop.

    Args:
        x: (B, C, H, W), any dtype.
        dy, dx: int (B,) offsets in 0..2*pad, or None for no crop.
        flip: bool (B,), or None for no flip.
        pad: padding on each side.
        padding_mode: "reflect" or "zeros".
    """
    batch, channels, height, width = x.shape
    device = x.device
    rows = torch.arange(height, device=device).expand(batch, height)  # (B, H)
    cols = torch.arange(width, device=device).expand(batch, width)    # (B, W)
    if dy is not None:
        rows = rows + (dy - pad)[:, None]
        cols = cols + (dx - pad)[:, None]
    if flip is not None:
        cols = torch.where(flip[:, None], cols.flip(1), cols)
    inside = None
    if padding_mode == "reflect":
        rows = _reflect(rows, height)
        cols = _reflect(cols, width)
    else:
        inside = ((rows >= 0) & (rows < height))[:, None, :, None] \
            & ((cols >= 0) & (cols < width))[:, None, None, :]   # (B, 1, H, W)
        rows = rows.clamp(0, height - 1)
        cols = cols.clamp(0, width - 1)
    # Pixel (r, c) of sample i sits at r * W + c in its flattened image: one gather.
    source = (rows[:, :, None] * width + cols[:, None, :]).view(batch, 1, height * width)
    out = x.reshape(batch, channels, height * width).gather(
        2, source.expand(batch, channels, height * width))  # (B, C, H*W)
    out = out.view(batch, channels, height, width)           # (B, C, H, W)
    if inside is not None:
        out = torch.where(inside, out, torch.zeros((), dtype=out.dtype, device=device))
    return out


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    # Mirror without repeating the edge pixel, as torch's "reflect" padding: -1 -> 1.
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def _check_data(images, labels) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"GPULoader: images must be a torch.Tensor (N, C, H, W), "
                        f"got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"GPULoader: images must be 4-D (N, C, H, W), got shape "
                         f"{tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"GPULoader: images must be uint8 (0-255) or float (0-1), "
                        f"got {images.dtype}")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"GPULoader: labels must be a 1-D tensor (N,), got {shape}")
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"GPULoader: labels must be integer class indices, got {labels.dtype}")
    if len(labels) != len(images):
        raise ValueError(f"GPULoader: {len(images)} images but {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("GPULoader: the data set is empty")


def _channel_stats(value, channels: int, name: str) -> tuple[float, ...]:
    values = (float(value),) * channels if isinstance(value, (int, float)) else \
        tuple(float(v) for v in value)
    if len(values) != channels:
        raise ValueError(f"GPULoader: {name} needs {channels} values (one per channel), "
                         f"got {len(values)}")
    return values


def _dataset_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units, from up to 10,000 images."""
    sample = images[:10_000].double()
    if images.dtype == torch.uint8:
        sample = sample / 255.0
    mean = sample.mean(dim=(0, 2, 3))
    std = sample.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return tuple(mean.tolist()), tuple(std.tolist())


def make_dataloader(dataset: torch.utils.data.Dataset, batch_size: int, *,
                    shuffle: bool = True, num_workers: int | None = None,
                    seed: int | None = None, drop_last: bool = False,
                    **kwargs) -> torch.utils.data.DataLoader:
    """A torch DataLoader with safe defaults for notebooks and torch.distributed.

    Args:
        dataset: a map-style torch Dataset.
        batch_size: samples per batch in this process.
        shuffle: reshuffle every epoch.
        num_workers: worker processes; None picks `default_num_workers()`.
        seed: seeds the shuffling generator, for repeatable runs.
        drop_last: drop a final incomplete batch.
        **kwargs: passed on to torch.utils.data.DataLoader.
    """
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise TypeError(f"make_dataloader: expected a map-style Dataset (with __getitem__ and "
                        f"__len__), got {type(dataset).__name__}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"make_dataloader: batch_size must be a positive int, got {batch_size!r}")
    from labcode.distributed import rank_and_world
    workers = default_num_workers() if num_workers is None else num_workers
    generator = None
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)
    rank, world = rank_and_world()
    sampler = None
    if world > 1:
        # fit calls sampler.set_epoch(epoch) so each epoch is shuffled differently.
        sampler = torch.utils.data.DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=shuffle,
            seed=seed or 0, drop_last=drop_last)
        shuffle = False
    kwargs.setdefault("pin_memory", torch.cuda.is_available())
    if workers > 0:
        kwargs.setdefault("persistent_workers", True)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler,
        num_workers=workers, generator=generator, drop_last=drop_last, **kwargs)


def default_num_workers() -> int:
    """0 inside notebooks on Windows and macOS (worker processes started by "spawn" hang
    there on functions defined in the notebook); otherwise min(2, CPU count)."""
    in_notebook = "ipykernel" in sys.modules
    if in_notebook and sys.platform in ("win32", "darwin"):
        return 0
    return min(2, os.cpu_count() or 1)
