"""A tiny CNN, toy data and one seeded training run, shared by test_train.py and
test_checkpoint.py."""
from __future__ import annotations

import torch
from torch import nn

from labcode.data import GPULoader, make_dataloader
from labcode.train import fit, seed_everything


def tiny_cnn(dropout: float = 0.0) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * 4 * 4, 3))


def toy_data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 3, (n,), generator=g)
    return images, labels


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def assert_same_weights(a, b):
    pa, pb = params(a), params(b)
    assert len(pa) == len(pb)
    for x, y in zip(pa, pb):
        assert torch.equal(x, y)


def run(seed=0, *, epochs=3, checkpoint=None, max_steps=None, checkpoint_every=None,
        loss_fn=None, data="gpu", dropout=0.3):
    """A run with augmentation, dropout, Adam and a per-step scheduler: every source of
    randomness and every piece of state a resume has to restore.

    data: "gpu" (a GPULoader), "dataloader" (a DataLoader shuffling with torch's global
    generator) or "seeded" (make_dataloader(seed=...), shuffling with its own generator).
    """
    images, labels = toy_data()
    seed_everything(seed)
    model = tiny_cnn(dropout)
    if data == "gpu":
        train = GPULoader(images, labels, 10, augment="crop_flip", pad=1, device="cpu")
    elif data == "seeded":
        dataset = torch.utils.data.TensorDataset(images.float() / 255, labels)
        train = make_dataloader(dataset, 10, num_workers=0, seed=seed + 100)
    else:
        dataset = torch.utils.data.TensorDataset(images.float() / 255, labels)
        train = torch.utils.data.DataLoader(dataset, batch_size=10, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-2,
                                                    total_steps=epochs * len(train))
    history = fit(model, train, epochs=epochs, optimizer=optimizer, scheduler=scheduler,
                  device="cpu", seed=seed, checkpoint=checkpoint, max_steps=max_steps,
                  checkpoint_every=checkpoint_every, loss_fn=loss_fn, progress=False)
    return model, history
