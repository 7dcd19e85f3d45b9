"""How fast does a model train on labcode's own layers, next to torch's kernels?

For the course-scale models (the small AlexNet, the small EfficientNetV2 and the small
ViT) it times training steps (forward, loss, backward, SGD update) on random
digit-shaped batches, once with `set_backend(model, "scratch")` and once with the
"torch" backend, from the same weights, interleaved block by block so both see the
same machine state, and prints images per second and the ratio scratch / torch.
On CUDA the CNNs run channels-last under bfloat16 autocast, as `fit` runs them there;
on a CPU in float32 unless --autocast. Nothing is asserted.

    python benchmarks/scratch_training.py [--device cuda] [--batch 256] [--steps 20]
                                          [--autocast] [--only vit]
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from labcode import models  # noqa: E402
from labcode.device import describe, pick_device  # noqa: E402
from labcode.layers import set_backend  # noqa: E402

BUILDERS = {
    "alexnet_small": models.alexnet_small,
    "efficientnet_v2_small": models.efficientnet_v2_small,
    "vit_small": models.vit_small,
}


def train_steps(model, optimizer, x, y, steps: int, autocast: bool) -> float:
    """Seconds for `steps` training steps on the same batch (the device waited for)."""
    _sync(x.device)
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _sync(x.device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch", type=int, default=None, help="default 512 on CUDA, 64 on a CPU")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per backend")
    parser.add_argument("--autocast", action="store_true", help="bfloat16 autocast (default on CUDA)")
    parser.add_argument("--only", default="", help="run the models whose name contains this")
    args = parser.parse_args()
    device = pick_device(args.device)
    on_gpu = device.type == "cuda"
    batch = args.batch or (512 if on_gpu else 64)
    steps = args.steps or (20 if on_gpu else 3)
    autocast = args.autocast or on_gpu
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"{describe(device)}, torch {torch.__version__}, {torch.get_num_threads()} threads{load}; "
          f"batch {batch}, {steps} steps x {args.repeats} blocks per backend, "
          f"{'bfloat16 autocast' if autocast else 'float32'}\n")
    print(f"{'model':24} {'torch img/s':>12} {'scratch img/s':>14} {'scratch/torch':>14}")
    torch.manual_seed(0)
    for name, build in BUILDERS.items():
        if args.only not in name:
            continue
        base = build()
        layout = torch.channels_last if on_gpu and "vit" not in name else torch.contiguous_format
        x = torch.randn(batch, 1, 28, 28, device=device).contiguous(memory_format=layout)
        y = torch.randint(0, 10, (batch,), device=device)
        runs = {}
        for backend in ("torch", "scratch"):
            model = set_backend(copy.deepcopy(base), backend).to(device, memory_format=layout)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, fused=True)
            train_steps(model, optimizer, x, y, 2, autocast)  # warm-up: allocator, autotuning
            runs[backend] = (model, optimizer)
        seconds = {"torch": [], "scratch": []}
        for _ in range(args.repeats):
            for backend, (model, optimizer) in runs.items():
                seconds[backend].append(train_steps(model, optimizer, x, y, steps, autocast))
        rate = {b: batch * steps / statistics.median(s) for b, s in seconds.items()}
        print(f"{name:24} {rate['torch']:12.0f} {rate['scratch']:14.0f} "
              f"{rate['scratch'] / rate['torch']:14.2f}", flush=True)


if __name__ == "__main__":
    main()
