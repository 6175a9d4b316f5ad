"""Prepare the next batch while the current step runs: its host-to-device copy, RandAugment, crop and the rest of the
batch path on a CUDA side stream.

:class:`Prefetcher` is device-agnostic in its logic -- which item is prepared when, and in what order items come
out -- so that logic is tested on the CPU; only the stream parts (side stream, events, ``record_stream``) are CUDA's
and are no-ops elsewhere. With ``ahead = 0`` an item is prepared right before it is used (the order of an
unprefetched loop); with ``ahead = 1`` item i + 1 is prepared before item i is handed out. The items come from one
epoch's iterable only, so nothing of the next epoch is read before the epoch-end checkpoint (exact resume), and the
replay buffer's order is untouched (the prefetcher sees its output).

Stream ordering on CUDA: the side stream first waits for the work already queued on the current stream (the batch
path's constants were made there); each item is read from the iterable on the side stream too (a loader that makes
its batches on the device, ``data.device_cache``, queues that work there, before the item's preparation); each
prepared item's event is recorded on the side stream and waited for by the current stream before the item is handed
out, and each of its tensors is marked with ``record_stream`` so the caching allocator does not give its memory
back to the side stream while the step still reads it.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Generic, Iterable, Iterator, TypeVar

import torch

__all__ = ["Prefetcher", "tensors_in"]

T = TypeVar("T")
U = TypeVar("U")
_END = object()


def tensors_in(obj) -> list[torch.Tensor]:
    """The tensors in a (nested) tuple / list / dict."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in tensors_in(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in tensors_in(o)]
    return []


class Prefetcher(Generic[T, U]):
    """``prefetcher.run(items, prepare)`` yields ``prepare(item)`` for each item, preparing up to ``ahead`` items
    before the one handed out (on a side stream when ``device`` is CUDA)."""

    def __init__(self, device: torch.device, ahead: int):
        if isinstance(ahead, bool) or not isinstance(ahead, int) or ahead < 0:
            raise ValueError(f"ahead must be an integer >= 0, got {ahead!r}")
        self.device, self.ahead = torch.device(device), ahead
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" and ahead > 0 else None

    def run(self, items: Iterable[T], prepare: Callable[[T], U]) -> Iterator[U]:
        it = iter(items)
        queue: deque = deque()
        if self.stream is not None:
            self.stream.wait_stream(torch.cuda.current_stream(self.device))

        def launch() -> bool:
            if self.stream is None:
                item = next(it, _END)
                if item is _END:
                    return False
                queue.append((prepare(item), None))
                return True
            with torch.cuda.stream(self.stream):
                # the item is read on the side stream too: a loader that makes its batch on the device (data.
                # device_cache) queues that work before prepare's, on the stream that prepare reads it from
                item = next(it, _END)
                if item is _END:
                    return False
                out = prepare(item)
                done = torch.cuda.Event()
                done.record(self.stream)
            queue.append((out, done))
            return True

        while len(queue) < self.ahead and launch():
            pass
        while queue or launch():
            out, done = queue.popleft()
            while len(queue) < self.ahead and launch():  # the next item's work is queued before this one is used
                pass
            if done is not None:
                current = torch.cuda.current_stream(self.device)
                current.wait_event(done)
                for t in tensors_in(out):
                    t.record_stream(current)
            yield out
