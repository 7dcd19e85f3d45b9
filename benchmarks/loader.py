"""Images per second: labcode's GPU-resident loader against a torch DataLoader.

Both feed the same small CNN one epoch of CIFAR-shaped data (synthetic uint8 images,
3x32x32) with the same augmentation, random crop after 4 pixels of reflect padding and
a random horizontal flip:

- GPULoader: the data set on the device as uint8, augmentation for the whole batch in
  one gather (labcode.data.loader);
- DataLoader: a Dataset whose __getitem__ pads, crops and flips one image at a time,
  num_workers=2, pinned memory, copied to the device per batch.

Prints both rates and their ratio. Usage: python benchmarks/loader.py [--quick] [--device cuda]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from labcode.data import GPULoader  # noqa: E402
from small_cnn import small_cnn  # noqa: E402  (benchmarks/small_cnn.py)
from labcode.device import pick_device, precision  # noqa: E402

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


class PerSampleCrops(torch.utils.data.Dataset):
    """The usual way: one image at a time, as torchvision's RandomCrop + RandomHorizontalFlip."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, pad: int = 4):
        self.images, self.labels, self.pad = images, labels, pad
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = self.images[i].float().div(255)                             # (3, 32, 32)
        padded = F.pad(image[None], (self.pad,) * 4, mode="reflect")[0]    # (3, 40, 40)
        top, left = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
        image = padded[:, top:top + 32, left:left + 32]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        return (image - self.mean) / self.std, self.labels[i]


def train_epoch(model, optimizer, batches, device, prec, limit: int | None) -> tuple[int, float]:
    """Train on the batches; returns (images seen, seconds)."""
    seen = 0
    synchronize(device)
    start = time.perf_counter()
    for step, (x, y) in enumerate(batches):
        if limit is not None and step >= limit:
            break
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with prec.autocast():
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y)
    synchronize(device)
    return seen, time.perf_counter() - start


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and steps")
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    device = pick_device(args.device)
    prec = precision(device)
    n = 10_000 if args.quick or device.type == "cpu" else 50_000
    limit = 8 if device.type == "cpu" else None   # a CPU trains slowly: a few batches do
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=g)

    model = small_cnn().to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, fused=True)
    gpu_loader = GPULoader(images, labels, args.batch_size, augment="crop_flip", pad=4,
                           device=device, seed=0, mean=MEAN, std=STD)
    torch_loader = torch.utils.data.DataLoader(
        PerSampleCrops(images, labels), batch_size=args.batch_size, shuffle=True,
        num_workers=args.workers, pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0)

    # Warm up both (cuDNN autotuning, worker start-up), then time them in turn.
    train_epoch(model, optimizer, gpu_loader, device, prec, 3)
    train_epoch(model, optimizer, torch_loader, device, prec, 3)
    rates = {"GPULoader": [], "DataLoader": []}
    for _ in range(2 if args.quick else 3):
        for name, loader in (("GPULoader", gpu_loader), ("DataLoader", torch_loader)):
            seen, seconds = train_epoch(model, optimizer, loader, device, prec, limit)
            rates[name].append(seen / seconds)
    best = {name: max(values) for name, values in rates.items()}
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}, {n} images, batch {args.batch_size}, "
          f"DataLoader workers {args.workers}")
    for name, rate in best.items():
        print(f"  {name:10s}: {rate:12,.0f} images/s (best of {len(rates[name])})")
    print(f"  ratio GPULoader / DataLoader: {best['GPULoader'] / best['DataLoader']:.1f}x")

    # The loader alone, without a model: the ceiling of the data path.
    for name, loader in (("GPULoader", gpu_loader), ("DataLoader", torch_loader)):
        synchronize(device)
        start, seen = time.perf_counter(), 0
        for step, (x, y) in enumerate(loader):
            x = x.to(device, non_blocking=True)
            seen += len(y)
            if limit is not None and step + 1 >= 4 * limit:
                break
        synchronize(device)
        print(f"  {name:10s} alone: {seen / (time.perf_counter() - start):12,.0f} images/s")


if __name__ == "__main__":
    main()
