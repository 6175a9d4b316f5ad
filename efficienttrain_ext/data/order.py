"""The training order: one global permutation per epoch that every rank slices, whatever the number of ranks.

Epoch ``e``'s permutation of the whole training set depends on the run's seed and ``e`` only. It is cut into
micro-batches of ``batch`` images, and rank ``r`` of ``W`` takes micro-batches ``r, r + W, r + 2W, ...`` (the last
incomplete round is dropped, so every rank runs ``(n // W) // batch`` of them, what a ``DistributedSampler`` with
``drop_last`` gives). An optimizer step of ``A`` accumulated micro-batches on ``W`` ranks then trains on one
contiguous span of ``W * A * batch`` images of the permutation, cut into the same micro-batches whatever ``W`` and
``A`` are: a run resumed on another number of processes, with accumulation making up the global batch, trains on
the same global batches as the uninterrupted run (``etrain train --resume`` on M ranks of an N-rank checkpoint).
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["epoch_permutation", "GlobalBatchSampler"]


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of ``range(n)`` that epoch ``epoch`` trains in (the same on every rank)."""
    g = torch.Generator().manual_seed(seed * 100003 + epoch * 1009)
    return torch.randperm(n, generator=g)


class GlobalBatchSampler(Sampler[list[int]]):
    """Rank ``rank``'s micro-batches of the epoch's global order (module docstring); ``set_epoch`` picks the epoch."""

    def __init__(self, n: int, batch: int, world: int = 1, rank: int = 0, seed: int = 0):
        if batch < 1 or world < 1 or not 0 <= rank < world:
            raise ValueError(f"need batch >= 1 and 0 <= rank < world, got batch {batch}, rank {rank}, world {world}")
        self.n, self.batch, self.world, self.rank, self.seed = int(n), int(batch), int(world), int(rank), int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return (self.n // self.world) // self.batch

    def __iter__(self) -> Iterator[list[int]]:
        perm = epoch_permutation(self.n, self.seed, self.epoch)
        b = self.batch
        for t in range(len(self)):
            k = t * self.world + self.rank
            yield perm[k * b:(k + 1) * b].tolist()
