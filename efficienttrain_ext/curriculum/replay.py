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

    Batches from a CUDA device are copied to the host asynchronously, into pinned memory, with an event per batch;
    draws come back on that device. Images drawn from the batch just added (whose copy may still be in flight) are
    gathered from its device copy; older ones are gathered on the host (after their copy's event, long done by then)
    into a pinned buffer and uploaded without blocking. So a step costs no host sync and no pageable copy, and the
    buffer takes no device memory beyond the latest batch (the largest preset holds 1,920 batches).
    """

    def __init__(self, capacity: int, generator: torch.Generator | None = None):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"replay buffer capacity must be an integer >= 1 (loaded batches), got {capacity!r}")
        self.capacity = capacity
        self.generator = generator
        self._x: list[torch.Tensor] = []  # fp16 host copies (pinned for CUDA batches)
        self._y: list[torch.Tensor] = []
        self._ready: list[torch.cuda.Event | None] = []  # the host copy's event, None once known complete
        self._fresh: tuple[torch.Tensor, torch.Tensor] | None = None  # device copy of the latest CUDA batch

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
        x = x.detach().to(torch.float16, copy=True)  # a copy of its own even for fp16: the caller may write to x
        y = y.detach()
        if x.is_cuda:
            hx = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
            hy = torch.empty(y.shape, dtype=y.dtype, pin_memory=True)
            hx.copy_(x, non_blocking=True)
            hy.copy_(y, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(torch.cuda.current_stream(x.device))
            self._fresh = (x, y.to(x.device))
        else:
            hx, hy, ready = x.to("cpu"), y.to("cpu"), None
            self._fresh = None
        self._x.append(hx)
        self._y.append(hy)
        self._ready.append(ready)
        if len(self._y) > self.capacity:
            del self._x[0], self._y[0], self._ready[0]

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` images and their labels, uniformly with replacement from everything held (fp16; on the device of the
        batches added, the host for CPU batches)."""
        if not self._y:
            raise ValueError("the replay buffer is empty: add a batch before drawing")
        if n == 0:
            empty = self._x[0][:0], self._y[0][:0]
            return empty if self._fresh is None else (empty[0].to(self._fresh[0].device),
                                                       empty[1].to(self._fresh[1].device))
        sizes = torch.tensor([len(y) for y in self._y])
        ends = torch.cumsum(sizes, 0)
        flat = torch.randint(0, int(ends[-1]), (n,), generator=self.generator)
        which = torch.searchsorted(ends, flat, right=True)  # the batch each drawn image sits in
        offset = flat - (ends - sizes)[which]
        if self._fresh is None:
            picks = list(zip(which.tolist(), offset.tolist()))
            return torch.stack([self._x[b][o] for b, o in picks]), torch.stack([self._y[b][o] for b, o in picks])
        return self._draw_to_device(which, offset)

    def _draw_to_device(self, which: torch.Tensor, offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fx, fy = self._fresh
        dev, n = fx.device, len(which)
        latest = which == len(self._y) - 1
        x = torch.empty((n, *fx.shape[1:]), dtype=fx.dtype, device=dev)
        y = torch.empty((n, *fy.shape[1:]), dtype=fy.dtype, device=dev)
        old = (~latest).nonzero().flatten()
        if len(old):
            hx = torch.empty((len(old), *fx.shape[1:]), dtype=fx.dtype, pin_memory=True)
            hy = torch.empty((len(old), *fy.shape[1:]), dtype=fy.dtype, pin_memory=True)
            picks = list(zip(which[old].tolist(), offset[old].tolist()))
            for b in set(which[old].tolist()):
                if self._ready[b] is not None:
                    self._ready[b].synchronize()  # queued a step or more ago: complete in practice
                    self._ready[b] = None
            torch.stack([self._x[b][o] for b, o in picks], out=hx)
            torch.stack([self._y[b][o] for b, o in picks], out=hy)
            pos = _upload(old, dev)
            x[pos] = hx.to(dev, non_blocking=True)
            y[pos] = hy.to(dev, non_blocking=True)
        new = latest.nonzero().flatten()
        if len(new):
            pos, src = _upload(new, dev), _upload(offset[new], dev)
            x[pos] = fx[src]
            y[pos] = fy[src]
        return x, y


def _upload(index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host index tensor on ``device`` through pinned memory (no sync)."""
    return index.pin_memory().to(device, non_blocking=True)
