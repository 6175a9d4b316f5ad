"""Every collective of the package, each on a tensor of the device its group's backend takes.

A process group maps device types to backends. NCCL's default group maps only ``cuda``: a CPU tensor given to it
raises ``No backend type associated with device type cpu`` (the same happens under ``"cuda:gloo"``, which is how
the tests reproduce NCCL's rules on a machine without a GPU). So two groups serve a run:

* the **device group** carries tensors that live on the training device: DDP's gradient buckets (it is handed to
  :class:`~torch.nn.parallel.DistributedDataParallel`). It is the default group when that takes the device type;
  a CPU run under a CUDA-only default group uses the host group;
* the **host group** carries host data: epoch statistics, evaluation sums, unions of unreadable files, the ranks'
  RNG states at a checkpoint, and barriers. It is the default group when that takes CPU tensors (gloo), otherwise a
  gloo side group made once at start-up. Host data then never visits the GPU, so these calls wait for no kernel.

Nothing here runs per training step: the only per-step communication of a run is DDP's own gradient all-reduce
(unreadable images are replaced in the loader, :mod:`efficienttrain_ext.data.unreadable`, so no rank ever has to
agree with the others to skip a batch). In one process without a group every call is local.
``python_tests/test_architecture.py`` fails when another module calls a ``torch.distributed`` collective.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import TrainError
from .distributed import DistInfo

__all__ = ["Collectives", "group_device_types"]

# DDP without its per-step buffer broadcast (the buffers are still synchronised once, when DDP is built): newer
# torch names it forward_sync_buffers and deprecates broadcast_buffers
_NO_BUFFER_SYNC = {"forward_sync_buffers": False} \
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters \
    else {"broadcast_buffers": False}


def group_device_types(group: dist.ProcessGroup | None = None) -> set[str]:
    """The device types that ``group``'s backends take (the default group's when None)."""
    pg = group if group is not None else dist.distributed_c10d._get_default_group()
    return {d.type for d in pg._device_types}


class Collectives:
    """The collectives of one process (module docstring). Build it once, on every rank, after the default group
    exists: it may create the gloo side group, which every rank must do in the same order."""

    def __init__(self, info: DistInfo, device: torch.device):
        self.info, self.device = info, device
        self.host_group: dist.ProcessGroup | None = None  # None: the default group
        self.device_group: dist.ProcessGroup | None = None
        if not info.enabled:
            return
        types = group_device_types()
        if "cpu" not in types:
            self.host_group = dist.new_group(backend="gloo")
        if device.type not in types:
            if device.type != "cpu":
                raise TrainError(f"the default process group ({dist.get_backend()}) takes no {device.type} tensors: "
                                 f"choose train.dist_backend to match train.device {device}")
            self.device_group = self.host_group

    # ----- host data
    def sum(self, values: Sequence[float]) -> list[float]:
        """``values`` summed over ranks (float64 on the host)."""
        t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        if self.info.enabled:
            dist.all_reduce(t, group=self.host_group)
        return t.tolist()

    def sum_tensor(self, values: torch.Tensor) -> torch.Tensor:
        """A host float64 tensor summed over ranks (a copy; e.g. the task's evaluation sums)."""
        t = values.detach().to("cpu", torch.float64, copy=True)
        if self.info.enabled:
            dist.all_reduce(t, group=self.host_group)
        return t

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order."""
        if not self.info.enabled:
            return [obj]
        out: list[Any] = [None] * self.info.world
        dist.all_gather_object(out, obj, group=self.host_group)
        return out

    def union(self, items: set[str]) -> set[str]:
        """The union of every rank's ``items`` (e.g. the unreadable files each rank met in its part of the data)."""
        return set().union(*map(set, self.gather(sorted(items))))

    def barrier(self) -> None:
        """Every rank reaches this point before any goes on (e.g. the run directory exists before a rank writes)."""
        if self.info.enabled:
            dist.barrier(group=self.host_group)

    # ----- device data
    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` under DDP on the device group (the model itself in one process). DDP's per-step broadcast of
        rank 0's buffers is off: its gradient buckets are the only per-step communication, and the buffers are
        averaged at epoch ends instead (:meth:`average_buffers`)."""
        if not self.info.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, process_group=self.device_group, **_NO_BUFFER_SYNC)

    @torch.no_grad()
    def average_buffers(self, *modules: nn.Module) -> None:
        """Average the floating-point buffers of ``modules`` (BatchNorm's running statistics) over ranks, once per
        epoch before evaluation and checkpoints: every rank then evaluates and saves the same model. (Integer
        buffers, such as BatchNorm's step count, are equal on every rank.)"""
        if not self.info.enabled:
            return
        for m in modules:
            bufs = [b for b in m.buffers() if b.is_floating_point()]
            if not bufs:
                continue
            flat = torch.cat([b.reshape(-1).to(torch.float32) for b in bufs])
            dist.all_reduce(flat, group=self.device_group)
            flat /= self.info.world
            offset = 0
            for b in bufs:
                b.copy_(flat[offset:offset + b.numel()].view_as(b))
                offset += b.numel()

    def close(self) -> None:
        """Close the process group (at the end of a run that opened it)."""
        if self.info.enabled and dist.is_initialized():
            dist.destroy_process_group()
