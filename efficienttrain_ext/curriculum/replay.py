"""Replay buffer (EfficientTrain++): reuse every loaded batch several times to cut data-loading cost.

At small input sizes the model step is cheap and decoding + cropping images on the CPU becomes the bottleneck.
With a replay factor r, the trainer loads only 1/r of the batches of an epoch and trains on each r times; the
augmentation after loading (RandAugment, low-frequency crop, erasing, Mixup/CutMix) runs again at every use, so
repeats are not identical inputs. The number of optimisation steps per epoch, hence the learning-rate schedule,
does not change.

Order: batches are loaded into a buffer of r batches; the r * r uses of a full buffer are shuffled (seeded), so
the same batch rarely comes twice in a row and no batch waits longer than ~r^2 steps for its last use.
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator, TypeVar

import torch

__all__ = ["replay_batches", "loads_needed"]

T = TypeVar("T")


def loads_needed(steps: int, replay: int) -> int:
    """Batches to load for ``steps`` optimisation steps at replay factor ``replay``."""
    return math.ceil(steps / replay)


def replay_batches(batches: Iterable[T], replay: int, steps: int,
                   generator: torch.Generator | None = None) -> Iterator[tuple[T, bool]]:
    """Yield up to ``steps`` items ``(batch, fresh)``; ``fresh`` is True at a batch's first use.

    ``replay == 1`` passes ``batches`` through unchanged (and draws no random numbers). Fewer than ``steps``
    items come out only when ``batches`` runs dry first.
    """
    if isinstance(replay, bool) or not isinstance(replay, int) or replay < 1:
        raise ValueError(f"replay must be an integer >= 1, got {replay!r}")
    if steps <= 0:
        return
    it = iter(batches)
    if replay == 1:
        for done, b in enumerate(it):
            yield b, True
            if done + 1 >= steps:
                return
        return
    done = 0
    while done < steps:
        buffer: list[T] = []
        for b in it:
            buffer.append(b)
            if len(buffer) == replay or len(buffer) >= loads_needed(steps - done, replay):
                break
        if not buffer:
            return
        uses = torch.arange(len(buffer)).repeat_interleave(replay)
        order = uses[torch.randperm(len(uses), generator=generator)].tolist()
        seen: set[int] = set()
        for k in order:
            yield buffer[k], k not in seen
            seen.add(k)
            done += 1
            if done >= steps:
                return
