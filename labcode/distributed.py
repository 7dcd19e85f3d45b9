"""Training on several GPUs (or CPU processes) with torch.distributed.

`torchrun --nproc_per_node=N script.py` starts N copies of a script and tells each its
place through environment variables: WORLD_SIZE (how many), RANK (which one) and
LOCAL_RANK (which GPU on this machine). `setup()` reads them and joins the process group
(NCCL between GPUs, gloo between CPU processes); `labcode.train.fit` calls it and then
wraps the model in DistributedDataParallel (Li et al., "PyTorch Distributed: Experiences
on Accelerating Data Parallel Training", VLDB 2020), which averages the gradients of all
processes after every backward pass, so N processes with batch B train like one with
batch N*B. Without those variables everything here is a no-op.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the variables torchrun sets; (0, 1, 0) without."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local_rank


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 when alone)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    rank, world, _ = env_world()
    return rank, world


def is_main() -> bool:
    """True in the process that prints, plots and writes checkpoints (rank 0)."""
    return rank_and_world()[0] == 0


def default_device() -> torch.device:
    """cuda:LOCAL_RANK under torchrun with GPUs, otherwise labcode.device.pick_device()."""
    _, world, local_rank = env_world()
    if world > 1 and _has_gpu(local_rank):
        return torch.device("cuda", local_rank)
    from labcode.device import pick_device
    return pick_device()


def _has_gpu(local_rank: int) -> bool:
    # One GPU per process: with fewer GPUs than processes, fall back to CPU and gloo.
    return torch.cuda.is_available() and local_rank < torch.cuda.device_count()


def setup(backend: str | None = None) -> bool:
    """Join the process group if torchrun started us; True when running distributed.

    Args:
        backend: "nccl" or "gloo"; None picks NCCL when CUDA is available, else gloo.
    """
    rank, world, local_rank = env_world()
    if world <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if dist.is_initialized():
        return dist.get_world_size() > 1
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise RuntimeError(f"WORLD_SIZE={world} but {name} is not set: start the script "
                               f"with torchrun --nproc_per_node=N script.py")
    if backend is None:
        backend = "nccl" if _has_gpu(local_rank) else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return True


def cleanup() -> None:
    """Leave the process group (call once at the end of a distributed script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all processes (returns it unchanged when alone)."""
    if is_distributed():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values

