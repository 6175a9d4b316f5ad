"""Data loaders of a run: an :class:`EpochLoader` per distinct per-process batch size, and the validation loader.

An epoch loader yields ``(images uint8 [N, C, H, W], targets, paths of unreadable images)`` per batch (``drop_last``,
so every rank takes the same number of steps) and is reshuffled with :meth:`EpochLoader.set_epoch`: each epoch is one
global permutation seeded by the run's seed and the epoch, which every rank slices (:mod:`~..data.order`), so a
resumed run sees the same order, on the same or another number of ranks. An unreadable training image is replaced
by the next readable one (:mod:`~..data.unreadable`), so batches keep their size.
``data.loader`` picks the implementation (:data:`LOADERS`): ``torch`` (this module) or ``dali``
(:mod:`efficienttrain_ext.data.dali_pipeline`, NVIDIA DALI decoding on the GPU or CPU; optional dependency);
``data.device_cache: true`` picks ``device`` (:mod:`efficienttrain_ext.data.device_cache`: the decoded images live
on the training device and batches are cropped there; its validation set too).
"""

from __future__ import annotations

from typing import Callable, Iterator, Protocol

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..data import GlobalBatchSampler, ReplaceUnreadable, collate_replaced, collate_skip
from ..data.dali_pipeline import DaliEpochLoader
from ..data.device_cache import DeviceEpochLoader, DeviceImages, DeviceValLoader
from .distributed import DistInfo

__all__ = ["EpochLoader", "TorchEpochLoader", "LOADERS", "build_val_loader"]


class EpochLoader(Protocol):
    def set_epoch(self, epoch: int) -> None: ...

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]: ...

    def __len__(self) -> int: ...


class TorchEpochLoader:
    """torch's DataLoader over the dataset with this rank's micro-batches of the global order (``data.loader:
    torch``)."""

    def __init__(self, dataset: Dataset, batch: int, info: DistInfo, *, workers: int, seed: int, pin_memory: bool):
        self.seed, self.info = seed, info
        self.generator = torch.Generator()  # the workers' base seed (their augmentation), per epoch and rank
        self.sampler = GlobalBatchSampler(len(dataset), batch, info.world, info.rank, seed)
        self.loader = DataLoader(ReplaceUnreadable(dataset), batch_sampler=self.sampler, num_workers=workers,
                                 collate_fn=collate_replaced, generator=self.generator, pin_memory=pin_memory,
                                 persistent_workers=False)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed * 100003 + epoch * 1009 + self.info.rank)
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.sampler)


# data.loader -> factory(dataset, batch, info, workers=, seed=, pin_memory=, **DataConfig.loader_options())
LOADERS: dict[str, Callable[..., EpochLoader]] = {"torch": TorchEpochLoader, "dali": DaliEpochLoader,
                                                  "device": DeviceEpochLoader}


def build_val_loader(dataset: Dataset, batch: int, info: DistInfo, *, workers: int, pin_memory: bool):
    """Validation batches in order; under DDP a plain strided shard without padding, so sums over ranks count every
    image once. A set cached on the device (``data.device_cache``) is read from there."""
    if isinstance(dataset, DeviceImages):
        return DeviceValLoader(dataset, batch, info)
    if info.world > 1:
        dataset = Subset(dataset, range(info.rank, len(dataset), info.world))
    return DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=workers, collate_fn=collate_skip,
                      pin_memory=pin_memory)
