"""Train a small CNN on the offline digits with one process per GPU (or CPU process).

    torchrun --nproc_per_node=2 scripts/train_ddp.py          # two processes
    python scripts/train_ddp.py                                # one, for comparison

torchrun starts the script once per process and sets WORLD_SIZE, RANK and LOCAL_RANK;
`labcode.train.fit` then joins the process group (NCCL on GPUs, gloo on CPUs) and wraps
the model in DistributedDataParallel. Every process keeps the whole data set on its
device and takes its own slice of each global batch, so the global batch is
`--batch-size` times the number of processes. Only rank 0 prints and saves.
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

from labcode import distributed
from labcode.data import GPULoader, load_digits
from labcode.train import fit, seed_everything


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 7, 7)
        )
        self.classifier = nn.Linear(64 * 7 * 7, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(x, 1)  # (B, 64 * 7 * 7)
        return self.classifier(x)


def main() -> None:
    parser = argparse.ArgumentParser(description="DDP training of a small CNN on offline digits")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--checkpoint", default=None, help="file to save and resume from")
    args = parser.parse_args()

    distributed.setup()
    seed_everything(0)  # same initial weights everywhere (DDP also broadcasts rank 0's)
    model = SmallCNN()
    train = GPULoader(load_digits("train"), batch_size=args.batch_size, augment="crop",
                      pad=2, seed=0)
    test = GPULoader(load_digits("test"), batch_size=500, shuffle=False,
                     mean=train.mean, std=train.std)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, fused=True)
    history = fit(model, train, epochs=args.epochs, optimizer=optimizer, val_data=test,
                  checkpoint=args.checkpoint, seed=0)
    rank, world = distributed.rank_and_world()
    if rank == 0:
        print(f"{world} process(es), global batch {args.batch_size * world}, "
              f"device {train.device}: test accuracy {history.val_acc[-1]:.4f}, "
              f"{sum(history.epoch_time):.1f} s")
    distributed.cleanup()


if __name__ == "__main__":
    main()
