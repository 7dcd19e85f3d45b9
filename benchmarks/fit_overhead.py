"""What labcode.train.fit costs over a minimal hand-written training loop.

Same model, data (GPU-resident, CIFAR-shaped synthetic images), precision and memory
layout; the two are run in turn several times (interleaved, so that clock or load
changes hit both) and the medians compared. fit adds loss and accuracy bookkeeping on
the device, a read-back of the losses every 25 steps, the non-finite check and
optionally the progress bar. Goal: at most 5% overhead, on a run long enough that
fixed costs (the first batch, the end of the epoch) do not dominate: the number of
epochs is chosen so that one run of the hand-written loop lasts at least --seconds
(default 10).

Usage: python benchmarks/fit_overhead.py [--quick] [--device cuda] [--seconds 10]
"""
from __future__ import annotations

import argparse
import math
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
    parser.add_argument("--seconds", type=float, default=None,
                        help="shortest run of the hand-written loop (default 10; 2 with --quick)")
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else (2.0 if args.quick else 10.0)

    device = pick_device(args.device)
    on_gpu = device.type == "cuda"
    n = 50_000 if on_gpu else 4_096
    batch = 512 if on_gpu else 128
    repeats = args.repeats or (3 if args.quick or not on_gpu else 5)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=g)
    loader = GPULoader(images, labels, batch, augment="crop_flip", device=device, seed=0)
    model = small_cnn().to(device, memory_format=torch.channels_last if on_gpu else
                           torch.contiguous_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, fused=True)

    # warm-up (cuDNN autotuning, allocator, first-call costs) and the epoch count: one
    # epoch of each, then as many epochs as make the hand-written loop last `seconds`
    minimal_loop(model, optimizer, loader, device, 1)
    fit(model, loader, epochs=1, optimizer=optimizer, device=device, progress=False)
    synchronize(device)
    start = time.perf_counter()
    minimal_loop(model, optimizer, loader, device, 1)
    synchronize(device)
    epochs = max(1, math.ceil(seconds / (time.perf_counter() - start)))

    runs = {
        "hand-written loop": lambda: minimal_loop(model, optimizer, loader, device, epochs),
        "fit": lambda: fit(model, loader, epochs=epochs, optimizer=optimizer, device=device,
                           progress=False),
        "fit + progress bar": lambda: fit(model, loader, epochs=epochs, optimizer=optimizer,
                                          device=device, progress=True),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            times[name].append(time.perf_counter() - start)

    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"{describe(device)}, torch {torch.__version__}, {torch.get_num_threads()} threads"
          f"{load}: {n} images x {epochs} epoch(s), batch {batch}, {len(loader) * epochs} "
          f"steps, median of {repeats} interleaved runs")
    base = statistics.median(times["hand-written loop"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:20s}: {median:8.3f} s   overhead {100 * (median / base - 1):+6.1f}%")


if __name__ == "__main__":
    main()
