"""Devices and PyTorch DDP set-up (``torchrun --nproc_per_node=N -m dleem train ...``).

torchrun sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; with ``WORLD_SIZE > 1`` we join the process group (NCCL on CUDA, gloo on
the CPU), pin each process to its local GPU, and only rank 0 writes files. Each rank
draws its own crops (seeded by rank), so N processes see N different batches per step
and DDP averages their gradients: the effective batch is N x ``--batch``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dleem.errors import DleemError

DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(choice: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: CUDA, then Apple MPS, then the CPU; an explicit choice must be available."""
    if choice not in DEVICES and not choice.startswith("cuda:"):
        raise DleemError(f"unknown device {choice!r} (choose from {', '.join(DEVICES)})")
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
        return torch.device("mps") if mps_ok else torch.device("cpu")
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DleemError("device cuda: no CUDA GPU is available to this PyTorch")
        if choice == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device(choice)
    if choice == "mps" and not mps_ok:
        raise DleemError("device mps: Apple MPS is not available")
    return torch.device(choice)


@dataclass
class DistInfo:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> DistInfo:
    """Pick the device and, under torchrun (``WORLD_SIZE > 1``), join the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local)
    info = DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)
    if world > 1:
        if dev.type == "mps":
            raise DleemError("multi-process training is not supported on Apple MPS")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            backend = "nccl" if dev.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, init_method="env://")
            info.initialized_here = True
    return info


def teardown(info: DistInfo) -> None:
    """Leave the process group if `setup` joined it."""
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_values(values: list[float], info: DistInfo) -> list[float]:
    """Rank 0's values on every rank (the wall-clock budget and a cancel, decided once)."""
    if not info.distributed:
        return list(values)
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=info.device)
    dist.broadcast(t, src=0)
    return [float(v) for v in t.tolist()]
