"""Gradient accumulation: one optimizer step over several micro-batches, so that the paper's global batch (4096)
is reachable on a few devices.

``train.accum_steps`` micro-batches of ``train.batch_size`` images per process make one optimizer step; ``auto``
takes the number that reaches ``train.global_batch`` (EfficientTrain's launcher does the same: ``update_freq =
4096 / gpus / batch``, LeapLabTHU/EfficientTrain ET_training.py). Each micro-batch's loss is divided by the number
of micro-batches, so the accumulated gradient is the gradient of the mean loss over the global batch; under DDP
every micro-batch but the last runs in ``no_sync`` (gradients are all-reduced once per optimizer step, not once
per micro-batch).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager, Iterable, Iterator, TypeVar

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..curriculum.replay import replay_batches
from ..errors import TrainError

__all__ = ["Accumulation", "resolve_accum_steps", "windows", "replay_micro_batches"]

T = TypeVar("T")


def resolve_accum_steps(accum_steps: int | str, global_batch: int | None, batch_size: int, world: int) -> int:
    """Micro-batches per optimizer step: ``accum_steps``, or for ``auto`` the number that makes ``batch_size`` x
    ``world`` x steps equal ``global_batch``; a given ``global_batch`` must be met exactly."""
    per_step = batch_size * world
    if accum_steps == "auto":
        if global_batch is None:
            raise TrainError("train.accum_steps=auto needs train.global_batch")
        if global_batch % per_step:
            raise TrainError(f"train.global_batch {global_batch} is not a multiple of train.batch_size x processes "
                             f"= {batch_size} x {world}: choose a batch size that divides it")
        return global_batch // per_step
    if not isinstance(accum_steps, int) or isinstance(accum_steps, bool) or accum_steps < 1:
        raise TrainError(f"train.accum_steps must be an integer >= 1 or auto, got {accum_steps!r}")
    if global_batch is not None and per_step * accum_steps != global_batch:
        raise TrainError(f"train.global_batch {global_batch} != train.batch_size x processes x train.accum_steps = "
                         f"{batch_size} x {world} x {accum_steps}; set train.accum_steps=auto")
    return accum_steps


@dataclass(frozen=True)
class Accumulation:
    """Where micro-batch ``j`` of an epoch sits in its optimizer step (epochs hold whole optimizer steps)."""

    steps: int = 1

    def micro(self, j: int) -> int:
        return j % self.steps

    def is_last(self, j: int) -> bool:
        return j % self.steps == self.steps - 1

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The micro-batch's share of the global batch's mean loss (unchanged without accumulation)."""
        return loss if self.steps == 1 else loss / self.steps

    def sync(self, model: nn.Module, j: int) -> ContextManager:
        """DDP's ``no_sync`` for every micro-batch but the last of an optimizer step (forward and backward run inside
        it); nothing for a plain module."""
        if isinstance(model, DistributedDataParallel) and not self.is_last(j):
            return model.no_sync()
        return contextlib.nullcontext()


def windows(batches: Iterable[T], size: int) -> Iterator[list[T]]:
    """``batches`` in consecutive groups of ``size`` (a short last group is dropped: an optimizer step needs all of
    its micro-batches)."""
    group: list[T] = []
    for b in batches:
        group.append(b)
        if len(group) == size:
            yield group
            group = []


def replay_micro_batches(loader: Iterable[T], replay: int, steps: int, accum: int,
                         generator: torch.Generator | None = None) -> Iterator[tuple[T, bool]]:
    """The micro-batches of ``steps`` optimizer steps as ``(batch, fresh)`` (:func:`~..curriculum.replay.
    replay_batches`). Replay works on whole optimizer steps: the ``accum`` micro-batches of a global batch are
    reused together, so a run with accumulation trains on the same image sets per step as one with an ``accum``
    times larger batch."""
    if accum == 1 or replay == 1:
        yield from replay_batches(loader, replay, steps * accum, generator)
        return
    for group, fresh in replay_batches(windows(loader, accum), replay, steps, generator):
        for b in group:
            yield b, fresh
