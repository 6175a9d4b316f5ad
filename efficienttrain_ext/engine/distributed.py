"""Process set-up for one process or torchrun DDP: ranks, the process group, the device and seeding. The
collectives themselves live in :mod:`.collectives`."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from ..errors import TrainError

__all__ = ["DistInfo", "init_distributed", "resolve_device", "seed_all", "DIST_MODES"]

DIST_MODES = ("auto", "always")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    group: bool = False  # a process group is open (always under torchrun with several ranks)

    @property
    def enabled(self) -> bool:
        """Collectives and DDP run: a process group is open (``train.distributed: always`` opens one even for a
        single process, so that one GPU runs every collective of a multi-GPU run)."""
        return self.group

    @property
    def main(self) -> bool:
        return self.rank == 0


def default_backend(device_pref: str) -> str:
    """NCCL when the run trains on a GPU, gloo on the CPU."""
    on_gpu = device_pref != "cpu" and torch.cuda.is_available()
    return "nccl" if on_gpu else "gloo"


def init_distributed(device_pref: str, mode: str = "auto", backend: str = "auto") -> DistInfo:
    """The process's ranks from torchrun's environment, with a process group when there are several ranks, or
    always with ``mode="always"``. ``backend``: ``auto`` (:func:`default_backend`) or any string
    ``torch.distributed.init_process_group`` takes (``nccl``, ``gloo``, ``cuda:gloo``, ``cpu:gloo,cuda:nccl``)."""
    if mode not in DIST_MODES:
        raise TrainError(f"train.distributed must be one of {DIST_MODES}, got {mode!r}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1 and mode == "auto":
        return DistInfo()
    if not dist.is_initialized():
        name = default_backend(device_pref) if backend == "auto" else backend
        if device_pref != "cpu" and torch.cuda.is_available():
            torch.cuda.set_device(local_rank)  # NCCL binds its communicator to the current device
        if "MASTER_ADDR" in os.environ:  # torchrun (or SLURM with the variables set): its rendezvous
            dist.init_process_group(name)
        else:  # a lone process with train.distributed=always: an in-process store
            dist.init_process_group(name, store=dist.HashStore(), rank=0, world_size=1)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, group=True)


def resolve_device(pref: str, info: DistInfo) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(pref)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)
    return device


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
