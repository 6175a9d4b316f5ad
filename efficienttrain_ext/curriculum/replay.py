"""Replay buffers (EfficientTrain++): reuse loaded images several times to cut data-loading cost.

Two modes (``curriculum.replay_mode``): ``reaugment`` (:func:`replay_batches`, below) and ``authors``
(:class:`SampleReplayBuffer`, the released code's large buffer of already-augmented images).

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

__all__ = ["replay_batches", "loads_needed", "SampleReplayBuffer", "REPLAY_MODES"]

REPLAY_MODES = ("reaugment", "authors")  # curriculum.replay_mode: this module's replay_batches, or SampleReplayBuffer

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


class SampleReplayBuffer:
    """EfficientTrain++'s released replay buffer (``curriculum.replay_mode: authors``; LeapLabTHU/EfficientTrain
    engine_buffer.py, main_buffer.py).

    Every step loads a batch of ``batch / r`` fresh images and augments it once; the augmented images are kept, first
    in first out, for the last ``capacity`` loaded batches (fp16 on the CPU, as the authors store them: ToHalf in
    datasets_buffer.py). The step trains on the fresh images plus ``(r - 1) / r`` of a batch drawn uniformly with
    replacement from the buffer, which already holds the fresh batch. The authors draw in chunks of 1/32 of a loaded
    batch (``replay_buffer_split_factor``); here single images are drawn, the same distribution at a finer grain.
    Replayed images are identical to their first use (no new augmentation draws); Mixup/CutMix runs afterwards on the
    whole batch. The buffer lives for one stage (the authors restart the process, and lose it, at every stage).
    """

    def __init__(self, capacity: int, generator: torch.Generator | None = None):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"replay buffer capacity must be an integer >= 1 (loaded batches), got {capacity!r}")
        self.capacity = capacity
        self.generator = generator
        self._x: list[torch.Tensor] = []
        self._y: list[torch.Tensor] = []

    def __len__(self) -> int:
        """Images held."""
        return sum(len(y) for y in self._y)

    @property
    def batches(self) -> int:
        return len(self._y)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Keep an augmented batch (images ``[n, C, B, B]``, labels ``[n]``); the oldest batch leaves when full."""
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"images and labels differ in count: {x.shape[0]} vs {y.shape[0]}")
        self._x.append(x.detach().to("cpu", torch.float16))
        self._y.append(y.detach().to("cpu"))
        if len(self._y) > self.capacity:
            del self._x[0], self._y[0]

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` images and their labels, uniformly with replacement from everything held (fp16, CPU)."""
        if not self._y:
            raise ValueError("the replay buffer is empty: add a batch before drawing")
        if n == 0:
            return self._x[0][:0], self._y[0][:0]
        sizes = torch.tensor([len(y) for y in self._y])
        ends = torch.cumsum(sizes, 0)
        flat = torch.randint(0, int(ends[-1]), (n,), generator=self.generator)
        which = torch.searchsorted(ends, flat, right=True)  # the batch each drawn image sits in
        offset = flat - (ends - sizes)[which]
        picks = list(zip(which.tolist(), offset.tolist()))
        return torch.stack([self._x[b][o] for b, o in picks]), torch.stack([self._y[b][o] for b, o in picks])
