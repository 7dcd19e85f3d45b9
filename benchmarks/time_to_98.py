"""Time to 98% test accuracy on the offline digits (4,000 training, 1,000 test images).

A small CNN (two blocks of two 3x3 convolutions with batch norm, then a linear
classifier) trained with AdamW and a one-cycle learning-rate schedule, fed by the
GPU-resident loader with random crops after 2 pixels of padding (no flips: a mirrored
digit is another symbol). Test accuracy is measured after every epoch; the script prints
the training time until it first reaches 98%, counting evaluation time too.

Settings (width, batch size, epochs, learning rate) are chosen with --val, which holds
out 500 training digits (the last 50 of each class) and reports accuracy on them
instead of the test set; the test set is read only by a run without --val.

Usage: python benchmarks/time_to_98.py [--quick] [--device cuda] [--epochs 20] [--val]
                                       [--batch-size 64] [--lr 4e-3] [--width 32]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from labcode.data import GPULoader, load_digits  # noqa: E402
from labcode.device import describe, pick_device  # noqa: E402
from labcode.train import fit, seed_everything  # noqa: E402

TARGET = 0.98


def block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.MaxPool2d(2))


def digits_cnn(width: int = 32) -> nn.Module:
    return nn.Sequential(
        block(1, width),              # (B, width, 14, 14)
        block(width, 2 * width),      # (B, 2 * width, 7, 7)
        nn.Flatten(),                 # (B, 2 * width * 7 * 7)
        nn.Dropout(0.25),
        nn.Linear(2 * width * 7 * 7, 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="at most 8 epochs")
    parser.add_argument("--device", default=None)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=32, help="channels of the first block")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=4e-3, help="OneCycle's peak learning rate")
    parser.add_argument("--val", action="store_true",
                        help="tune: hold out 500 training digits and report on them, not on test")
    args = parser.parse_args()
    epochs = min(args.epochs, 8) if args.quick else args.epochs

    device = pick_device(args.device)
    seed_everything(args.seed)
    images, labels = load_digits("train")
    if args.val:  # 50 digits of each class held out; the test set stays unread
        held = torch.cat([torch.nonzero(labels == k).flatten()[-50:] for k in range(10)])
        keep = torch.ones(len(labels), dtype=torch.bool)
        keep[held] = False
        train_set, eval_set = (images[keep], labels[keep]), (images[held], labels[held])
    else:
        train_set, eval_set = (images, labels), load_digits("test")
    train = GPULoader(*train_set, batch_size=args.batch_size, augment="crop", pad=2,
                      padding_mode="zeros", device=device, seed=args.seed)
    test = GPULoader(*eval_set, batch_size=1000, shuffle=False, device=device,
                     mean=train.mean, std=train.std)
    model = digits_cnn(args.width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4, fused=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=epochs * len(train), pct_start=0.25)
    start = time.perf_counter()
    history = fit(model, train, epochs=epochs, optimizer=optimizer, scheduler=scheduler,
                  val_data=test, device=device, seed=args.seed, progress=False)
    total = time.perf_counter() - start

    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    split = "validation (500 held-out training digits)" if args.val else "test"
    print(f"{describe(device)}, torch {torch.__version__}, threads {torch.get_num_threads()}"
          f"{load}; accuracy on {split}; width {args.width}, batch {args.batch_size}, "
          f"peak lr {args.lr:g}, {epochs} epochs")
    elapsed = 0.0
    reached = None
    for epoch, (seconds, acc) in enumerate(zip(history.epoch_time, history.val_acc), 1):
        elapsed += seconds
        print(f"  epoch {epoch:2d}: accuracy {acc:.4f} at {elapsed:6.1f} s")
        if reached is None and acc >= TARGET:
            reached = (epoch, elapsed)
    if reached is None:
        print(f"  did not reach {TARGET:.0%} in {epochs} epochs ({total:.1f} s); "
              f"best {max(history.val_acc):.4f}")
    else:
        print(f"  time to {TARGET:.0%}: {reached[1]:.1f} s (epoch {reached[0]}); "
              f"final {history.val_acc[-1]:.4f}, whole run {total:.1f} s")


if __name__ == "__main__":
    main()
