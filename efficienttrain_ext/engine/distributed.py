"""Process set-up for one process or torchrun DDP: ranks, the device, seeding, and the collectives the trainer
uses (all of them no-ops in a single process)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "resolve_device", "seed_all", "host_group", "all_agree", "all_sum",
           "all_union"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_pref: str) -> DistInfo:
    """torchrun's ranks (``WORLD_SIZE`` > 1): NCCL on GPUs, gloo on the CPU; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = device_pref != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return info


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


def all_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """``values`` (float64, CPU) summed over ranks."""
    if info.enabled:
        dist.all_reduce(values)
    return values


def host_group(info: DistInfo) -> dist.ProcessGroup | None:
    """A gloo group of every rank for host-side agreements (None: the default group, already gloo, or one process).
    Every rank must call it, in the same order as its other group creations."""
    if not info.enabled or dist.get_backend() == "gloo":
        return None
    return dist.new_group(backend="gloo")


def all_agree(ok: bool, info: DistInfo, group: dist.ProcessGroup | None = None) -> bool:
    """True when ``ok`` holds on every rank (one tiny all-reduce of a CPU tensor over ``group``, a gloo group from
    :func:`host_group`): ranks decide together, e.g. to skip a step whose batch is unreadable on one of them, so no
    rank waits in a collective the others skip. Nothing touches the GPU, so the host does not wait for its queue."""
    if not info.enabled:
        return ok
    flag = torch.tensor([1 if ok else 0], dtype=torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN, group=group)
    return bool(flag.item())


def all_union(items: set[str], info: DistInfo) -> set[str]:
    """The union of every rank's ``items`` (e.g. the unreadable files each rank met in its shard)."""
    if not info.enabled:
        return items
    gathered: list = [None] * info.world
    dist.all_gather_object(gathered, sorted(items))
    return set().union(*map(set, gathered))
