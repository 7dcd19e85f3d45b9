"""How fast are labcode's from-scratch layers next to torch's built-in kernels?

Times forward plus backward of `labcode.functional` against `torch.nn.functional` on
layer shapes taken from AlexNet (Krizhevsky et al. 2012), EfficientNetV2 (Tan & Le
2021) and the Vision Transformer (Dosovitskiy et al. 2021), scaled down so that the
whole run takes a minute or two on two CPU cores. The two implementations alternate
within one run (same machine state, same noise), each case is repeated, and the
table reports medians (or, with `--stat min`, the fastest repeat) and the ratio
ours / torch, with the geometric mean of the ratios at the end. Nothing is asserted:
timings are information, not tests.

The fastest repeat is the steadier figure on a virtual machine whose cores other jobs
share: a slow repeat is slow because of them, and it falls on either side at random
(torch's own strided depthwise layer took 2.3 ms in one run and 5.8 ms in the next).

On a machine shared with other jobs, wall time measures the queue for the cores as
much as the code; `--clock cpu` times the CPU seconds this process used instead (with
`--threads 1` that is the work itself, undisturbed by waiting), a steadier figure for
comparing two implementations of the same operation.

    python benchmarks/layers.py [--repeats 15] [--device cpu] [--scale 1.0]
                                [--clock wall|cpu] [--stat median|min] [--threads N]
                                [--only depthwise]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

import labcode.functional as LF


@dataclass
class Case:
    name: str
    shapes: str
    ours: Callable[..., torch.Tensor]
    theirs: Callable[..., torch.Tensor]
    make: Callable[[torch.device], list[torch.Tensor]]


def conv_case(name, batch, c_in, c_out, size, kernel, stride=1, padding=0, groups=1, image=False):
    """A convolution; `image` inputs (the first layer's) need no input gradient."""

    def make(device):
        x = torch.randn(batch, c_in, size, size, device=device, requires_grad=not image)
        w = torch.randn(c_out, c_in // groups, kernel, kernel, device=device) * 0.05
        b = torch.zeros(c_out, device=device)
        return [x, w.requires_grad_(), b.requires_grad_()]

    shapes = f"{batch}x{c_in}x{size}x{size} -> {c_out}, k{kernel}/s{stride}" + (
        f", groups {groups}" if groups > 1 else ""
    )
    return Case(
        name, shapes,
        lambda x, w, b: LF.conv2d(x, w, b, stride, padding, 1, groups),
        lambda x, w, b: F.conv2d(x, w, b, stride, padding, 1, groups),
        make,
    )


def pool_case(name, ours, theirs, batch, channels, size, kernel, stride):
    def make(device):
        return [torch.randn(batch, channels, size, size, device=device, requires_grad=True)]

    return Case(
        name, f"{batch}x{channels}x{size}x{size}, k{kernel}/s{stride}",
        lambda x: ours(x, kernel, stride), lambda x: theirs(x, kernel, stride), make,
    )


def attention_case(batch, heads, tokens, width):
    def make(device):
        return [torch.randn(batch, heads, tokens, width, device=device, requires_grad=True)
                for _ in range(3)]

    return Case(
        "attention (ViT-B)", f"{batch}x{heads}x{tokens}x{width}",
        LF.scaled_dot_product_attention, F.scaled_dot_product_attention, make,
    )


def cases(scale: float) -> list[Case]:
    n = max(1, round(8 * scale))
    return [
        conv_case("conv 5x5 (AlexNet conv2)", n, 64, 192, 27, 5, padding=2),
        conv_case("conv 11x11/4 (AlexNet conv1)", n, 3, 64, 227, 11, stride=4, padding=2, image=True),
        conv_case("grouped conv (AlexNet-2012 conv2)", n, 96, 256, 27, 5, padding=2, groups=2),
        conv_case("conv 3x3 (Fused-MBConv)", n, 48, 192, 28, 3, padding=1),
        conv_case("depthwise 3x3 (MBConv)", 2 * n, 256, 256, 24, 3, padding=1, groups=256),
        # the first block of an MBConv stage (EfficientNetV2-S stage 4: 64 * 4 channels)
        conv_case("depthwise 3x3/2 (MBConv 1st block)", 2 * n, 256, 256, 24, 3, stride=2,
                  padding=1, groups=256),
        conv_case("patch embedding 16/16 (ViT)", n, 3, 768, 224, 16, stride=16, image=True),
        pool_case("max pool 3/2 (AlexNet)", LF.max_pool2d, F.max_pool2d, 2 * n, 96, 55, 3, 2),
        pool_case("avg pool 3/2", LF.avg_pool2d, F.avg_pool2d, 2 * n, 96, 55, 3, 2),
        attention_case(n, 12, 197, 64),
    ]


def gemm_ceiling(device: torch.device, scale: float, repeats: int,
                 clock: Callable[[], float]) -> tuple[float, float]:
    """GFLOP/s of torch's matrix product and of torch's convolution, on one layer.

    Our dense convolutions are matrix products (im2col, then `addmm`), so they can never
    beat the matrix product's speed; torch's convolution kernels are separate code
    (oneDNN on CPUs, cuDNN on GPUs) and may run faster. The product is timed on exactly
    the matrices im2col makes for the 5x5 row, so the ratio of the two speeds is the
    best ratio any im2col convolution can reach on this machine.
    """
    n, c, o, size, k = max(1, round(8 * scale)), 64, 192, 27, 5
    x = torch.randn(n, c, size, size, device=device)
    w = torch.randn(o, c, k, k, device=device)
    cols = torch.randn(n * size * size, c * k * k, device=device)  # (pixels, C*kh*kw)
    w2d = w.reshape(o, c * k * k).t().contiguous()  # (C*kh*kw, O)
    flop = 2 * cols.shape[0] * cols.shape[1] * o
    times: dict[str, list[float]] = {"mm": [], "conv": []}
    runs = {"mm": lambda: cols @ w2d, "conv": lambda: F.conv2d(x, w, padding=k // 2)}
    for _ in range(repeats + 1):  # the first round warms up
        for name, fn in runs.items():
            _sync(x)
            start = clock()
            fn()
            _sync(x)
            times[name].append(clock() - start)
    mm, conv = (flop / statistics.median(times[name][1:]) / 1e9 for name in ("mm", "conv"))
    return mm, conv


def step(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor], grad: torch.Tensor,
         clock: Callable[[], float] = time.perf_counter) -> tuple[float, float]:
    """Seconds for one forward pass, and for the forward and backward passes together."""
    for t in inputs:
        t.grad = None
    _sync(inputs[0])
    start = clock()
    out = fn(*inputs)
    _sync(inputs[0])
    forward = clock() - start
    out.backward(grad)
    _sync(inputs[0])
    return forward, clock() - start


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _sync(t: torch.Tensor) -> None:
    if t.device.type == "cuda":
        torch.cuda.synchronize(t.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scale", type=float, default=1.0, help="batch size multiplier")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time, or CPU time of this process (CPU device only)")
    parser.add_argument("--stat", choices=("median", "min"), default="median",
                        help="summarise the repeats by their median or by the fastest")
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads")
    parser.add_argument("--only", default="", help="run the rows whose name contains this")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.clock == "cpu" and device.type != "cpu":
        parser.error(f"--clock cpu times CPU work only; got --device {args.device}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.manual_seed(0)
    # Like with like: full float32 on both sides. On CUDA, cuDNN's convolutions would
    # otherwise use TF32 (torch's default for them: 10-bit mantissas), our matrix
    # products full float32 (torch's default for matmul).
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"torch {torch.__version__}, {_device_name(device)}, {torch.get_num_threads()} threads"
          f"{load}, {args.clock} clock, {args.stat} of {args.repeats}, forward + backward, "
          f"float32 (no TF32)\n")
    header = (f"{'layer':34} {'shape':38} {'torch ms':>9} {'ours ms':>9} {'forward':>8} "
              f"{'ours/torch':>10}")
    print(header)
    print("-" * len(header))
    ratios, forward_ratios = [], []
    for case in cases(args.scale):
        if args.only.lower() not in case.name.lower():
            continue
        inputs = case.make(device)
        grad = torch.randn_like(case.theirs(*inputs).detach())
        times = {"ours": [], "torch": []}
        for fn in (case.ours, case.theirs):  # warm-up: allocator, thread pool, caches
            step(fn, inputs, grad, clock)
        for _ in range(args.repeats):  # alternate, so both see the same machine state
            times["ours"].append(step(case.ours, inputs, grad, clock))
            times["torch"].append(step(case.theirs, inputs, grad, clock))
        summary = statistics.median if args.stat == "median" else min
        ours = [summary(t) for t in zip(*times["ours"])]  # (forward, total)
        theirs = [summary(t) for t in zip(*times["torch"])]
        ratios.append(ours[1] / theirs[1])
        forward_ratios.append(ours[0] / theirs[0])
        print(f"{case.name:34} {case.shapes:38} {theirs[1] * 1e3:9.2f} {ours[1] * 1e3:9.2f} "
              f"{ours[0] / theirs[0]:8.2f} {ours[1] / theirs[1]:10.2f}", flush=True)
    print("-" * len(header))
    print(f"{'geometric mean of ours/torch':92} {geomean(forward_ratios):8.2f} {geomean(ratios):10.2f}")
    print("(forward: ratio of the forward pass alone; ours/torch: forward + backward)")
    if not args.only:
        mm, conv = gemm_ceiling(device, args.scale, args.repeats, clock)
        print(f"\nceiling: torch's matrix product {mm:.0f} GFLOP/s, torch's convolution {conv:.0f} "
              f"GFLOP/s on the 5x5 row (forward):\nan im2col convolution can be at best "
              f"{conv / mm:.2f}x torch's time here")


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


if __name__ == "__main__":
    main()
