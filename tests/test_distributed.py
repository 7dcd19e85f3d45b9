"""fit under torch.distributed: two CPU processes (gloo) with batch B each must end with
the same weights as one process with batch 2B on the same global batches.

Run as a script, this file is the worker that torchrun starts twice.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent


def make_model() -> nn.Module:
    torch.manual_seed(0)
    # No dropout or batch norm: every process must compute the same function.
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def make_data():
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (48, 1, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 3, (48,), generator=g)
    return images, labels


def train(batch_size: int, rank: int | None, world_size: int | None):
    from labcode.data import GPULoader
    from labcode.train import fit
    images, labels = make_data()
    common = dict(mean=0.5, std=0.25, device="cpu", rank=rank, world_size=world_size)
    loader = GPULoader(images, labels, batch_size, augment="crop_flip", pad=1, seed=7, **common)
    val = GPULoader(images, labels, 8, shuffle=False, **common)
    model = make_model()
    history = fit(model, loader, epochs=2, val_data=val, device="cpu", progress=False,
                  optimizer=torch.optim.SGD(model.parameters(), lr=0.2))
    return model, history


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one_with_the_global_batch(tmp_path):
    # CPU processes talking over gloo, also on a machine with a GPU.
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1",
               "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", __file__, str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "rank1.json").exists()           # both processes finished

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, history = train(16, rank=0, world_size=1)
    finally:
        torch.set_num_threads(threads)
    ddp_state = torch.load(tmp_path / "ddp.pt", weights_only=True)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(ddp_state[name], value, atol=1e-6, rtol=1e-5)
    # And it really trained: the weights moved away from the initial ones.
    assert not torch.allclose(ddp_state["4.weight"], make_model().state_dict()["4.weight"])
    ddp_history = json.loads((tmp_path / "rank0.json").read_text())
    # Validation loss and accuracy are summed over both processes' halves of the data.
    assert ddp_history["val_loss"] == pytest.approx(history.val_loss, rel=1e-5)
    assert ddp_history["val_acc"] == pytest.approx(history.val_acc)
    assert ddp_history["train_acc"] == pytest.approx(history.train_acc)


def worker(out: Path) -> None:
    from labcode import distributed
    torch.set_num_threads(1)
    model, history = train(8, rank=None, world_size=None)   # rank and size from torchrun
    rank, world = distributed.rank_and_world()
    assert world == 2 and distributed.is_distributed()
    (out / f"rank{rank}.json").write_text(json.dumps(history.to_dict()))
    if rank == 0:
        torch.save(model.state_dict(), out / "ddp.pt")
    distributed.cleanup()


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
