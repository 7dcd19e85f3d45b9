"""What labcode.train.fit costs over a minimal hand-written training loop.

Same model, data (GPU-resident, CIFAR-shaped synthetic images), precision and memory
layout; the two are run in turn several times (interleaved, so that clock or load
changes hit both) and the medians compared. fit adds loss and accuracy bookkeeping on
the device, a read-back of the losses every 25 steps, the non-finite check and
optionally the progress bar. Goal: at most 5% overhead.

Usage: python benchmarks/fit_overhead.py [--quick] [--device cuda]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from labcode.data import GPULoader  # noqa: E402
from small_cnn import small_cnn  # noqa: E402  (benchmarks/small_cnn.py)
from labcode.device import describe, pick_device, precision  # noqa: E402
from labcode.train import fit  # noqa: E402


def minimal_loop(model, optimizer, loader, device, epochs: int) -> None:
    prec = precision(device)
    channels_last = device.type == "cuda"
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with prec.autocast():
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()

    device = pick_device(args.device)
    on_gpu = device.type == "cuda"
    n = 50_000 if on_gpu else 2_048
    batch = 512 if on_gpu else 128
    epochs = (2 if args.quick else 4) if on_gpu else 1
    repeats = args.repeats or (5 if args.quick else 7)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=g)
    loader = GPULoader(images, labels, batch, augment="crop_flip", device=device, seed=0)
    model = small_cnn().to(device, memory_format=torch.channels_last if on_gpu else
                           torch.contiguous_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)

    runs = {
        "hand-written loop": lambda: minimal_loop(model, optimizer, loader, device, epochs),
        "fit": lambda: fit(model, loader, epochs=epochs, optimizer=optimizer, device=device,
                           progress=False),
        "fit + progress bar": lambda: fit(model, loader, epochs=epochs, optimizer=optimizer,
                                          device=device, progress=True),
    }
    for run in runs.values():   # warm-up: cuDNN autotuning, allocator, first-call costs
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            times[name].append(time.perf_counter() - start)

    print(f"{describe(device)}, torch {torch.__version__}: {n} images x {epochs} epoch(s), "
          f"batch {batch}, {len(loader) * epochs} steps, median of {repeats} interleaved runs")
    base = statistics.median(times["hand-written loop"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:20s}: {median:8.3f} s   overhead {100 * (median / base - 1):+6.1f}%")


if __name__ == "__main__":
    main()
