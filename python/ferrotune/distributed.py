"""Data-parallel training over a torch.distributed process group, as `torchrun` starts it.

Each process trains on its part of every epoch (accelerate's BatchSamplerShard, as transformers'
Trainer deals batches), the gradients are averaged with torch.distributed's all-reduce (gloo on
CPUs, NCCL on GPUs), evaluation predictions are gathered so that every process computes the same
metrics, and only the first process writes files and logs."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

SUPPORTED_BACKENDS = ("gloo", "nccl")


@dataclass(frozen=True)
class Processes:
    """This process's rank among `count` processes training together."""

    index: int = 0
    count: int = 1

    @property
    def is_main(self) -> bool:
        return self.index == 0


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() else None


def join(device: torch.device) -> Processes:
    """The process group of this run: the one already initialized, or the one torchrun's
    environment (WORLD_SIZE > 1) describes, started here with NCCL for CUDA and gloo otherwise.
    A single process without either is `Processes()`."""
    dist = _dist()
    if dist is None:
        return Processes()
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return Processes()
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # Ours to close: a gloo group left open at exit sometimes aborts the process
        # ("terminate called without an active exception", seen 1 run in 20).
        atexit.register(_leave, dist)
    backend = str(dist.get_backend())
    if backend not in SUPPORTED_BACKENDS:
        raise NotImplementedError(
            f"the torch.distributed process group uses the {backend!r} backend; ferrotune "
            f"trains over gloo (CPUs) or nccl (CUDA GPUs)"
        )
    if backend == "nccl" and device.type != "cuda":
        raise ValueError(
            f"the torch.distributed process group uses nccl, which needs CUDA tensors, but the "
            f"model is on {device}; start the group with backend='gloo' to train on CPUs"
        )
    return Processes(dist.get_rank(), dist.get_world_size())


def _leave(dist) -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    """Where the group's collectives take tensors: CUDA for NCCL, the CPU for gloo."""
    dist = _dist()
    if str(dist.get_backend()) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def check_agreement(processes: Processes, **values: int) -> None:
    """Raises ValueError, in every process, when the processes disagree on one of `values`
    (model size, number of examples, ...), which would otherwise hang or train garbage."""
    if processes.count == 1:
        return
    dist = _dist()
    device = _collective_device()
    local = torch.tensor(list(values.values()), dtype=torch.int64, device=device)
    gathered = [torch.zeros_like(local) for _ in range(processes.count)]
    dist.all_gather(gathered, local)
    for i, name in enumerate(values):
        seen = [int(g[i]) for g in gathered]
        if len(set(seen)) > 1:
            ranks = ", ".join(f"rank {rank}: {value}" for rank, value in enumerate(seen))
            raise ValueError(
                f"the processes training together disagree on {name} ({ranks}); "
                f"each must load the same model and the same data"
            )


def average_(tensor: torch.Tensor, processes: Processes) -> torch.Tensor:
    """`tensor` replaced, in place, by its mean over the processes."""
    dist = _dist()
    device = _collective_device()
    if tensor.device == device:
        dist.all_reduce(tensor)
    else:
        moved = tensor.to(device)
        dist.all_reduce(moved)
        tensor.copy_(moved)
    return tensor.div_(processes.count)


def mean(value: float, processes: Processes) -> float:
    """The mean of a float over the processes."""
    if processes.count == 1:
        return value
    return float(average_(torch.tensor([value], dtype=torch.float64), processes)[0])


def gather_rows(processes: Processes, total: int, part: np.ndarray | None) -> np.ndarray | None:
    """The rows of an evaluation set back in order, each process having computed the rows
    index, index + count, ... (`part`)."""
    dist = _dist()
    parts: list[Any] = [None] * processes.count
    dist.all_gather_object(parts, part)
    if parts[0] is None:
        return None
    out = np.empty((total, *parts[0].shape[1:]), dtype=parts[0].dtype)
    for index, rows in enumerate(parts):
        out[index :: processes.count] = rows
    return out


def barrier(processes: Processes) -> None:
    """Waits for every process (after the first one wrote a checkpoint others may read)."""
    if processes.count > 1:
        _dist().barrier()
