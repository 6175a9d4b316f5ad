"""The training loss, kept on the device and read by the host only at ``train.log_interval`` steps and epoch ends.

Reading a CUDA tensor (``.item()``, ``float()``, ``.tolist()``) waits for every kernel queued before it: one read
per step would stop the host from queueing the next step's work while the GPU runs this one. So the epoch's loss
sum and the first non-finite loss (its step and value) are accumulated by device kernels, and
:meth:`DeviceLossMonitor.check` reads them in one transfer at the log interval, raising the same clear error the
step used to raise, naming the interval it covered.

:func:`host_sync_allowed` marks those deliberate reads: under ``torch.cuda.set_sync_debug_mode("error")`` (the GPU
check's sync-debug epoch) every other synchronisation in the step fails, these do not.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

__all__ = ["DeviceLossMonitor", "host_sync_allowed"]


@contextlib.contextmanager
def host_sync_allowed(device: torch.device) -> Iterator[None]:
    """A deliberate host read of device values: CUDA's sync debug mode is off for its duration (no-op elsewhere)."""
    if device.type != "cuda":
        yield
        return
    mode = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(0)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(mode)


class DeviceLossMonitor:
    """Sum of ``loss * images`` over an epoch and the first non-finite loss, as device tensors.

    ``interval``: optimizer steps between host reads (``train.log_interval``; under gradient accumulation the
    micro-batches of one step count once); :meth:`due` says when one is due.
    """

    def __init__(self, device: torch.device, interval: int):
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"log interval must be an integer >= 1, got {interval!r}")
        self.interval = interval
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.bad_step = torch.full((), -1, dtype=torch.int64, device=device)  # -1: every loss so far was finite
        self.bad_value = torch.zeros((), dtype=torch.float64, device=device)
        self.images = 0  # host-side: batch sizes are known without reading the device
        self.first_unchecked: int | None = None  # global step of the first step since the last check
        self.last_step: int | None = None
        self.since_check = 0
        self.last_mean = float("nan")  # mean loss over the images of the last checked interval
        self._at_check = (0.0, 0)  # (loss sum, images) at the last check

    def add(self, loss: torch.Tensor, images: int, step: int) -> None:
        """Queue one step's loss (a device scalar) for ``images`` images at global step ``step``; reads nothing."""
        loss = loss.detach().to(torch.float64)
        self.loss_sum += loss * images  # float64, the same sum the host-side float accumulation made
        first_bad = ~torch.isfinite(loss) & (self.bad_step < 0)
        self.bad_step = torch.where(first_bad, step, self.bad_step)
        self.bad_value = torch.where(first_bad, loss, self.bad_value)
        self.images += images
        self.first_unchecked = step if self.first_unchecked is None else self.first_unchecked
        if step != self.last_step:  # optimizer steps, not micro-batches: accumulation's micro-batches share a step
            self.since_check += 1
        self.last_step = step

    def due(self) -> bool:
        """Whether ``interval`` optimizer steps (distinct ``step`` values) were added since the last check."""
        return self.since_check >= self.interval

    def check(self) -> float:
        """One host read: raises ``FloatingPointError`` if a loss since the epoch start was not finite; returns the
        epoch's loss sum (of ``loss * images``)."""
        total, bad_step, bad_value = torch.stack([self.loss_sum, self.bad_step.to(torch.float64),
                                                  self.bad_value]).tolist()
        if bad_step >= 0:
            raise FloatingPointError(
                f"loss is {bad_value} at step {int(bad_step)} (found by the check of steps {self.first_unchecked}-"
                f"{self.last_step}: the loss is read every train.log_interval = {self.interval} steps)")
        self.first_unchecked, self.since_check = None, 0
        if self.images > self._at_check[1]:
            self.last_mean = (total - self._at_check[0]) / (self.images - self._at_check[1])
        self._at_check = (total, self.images)
        return total
