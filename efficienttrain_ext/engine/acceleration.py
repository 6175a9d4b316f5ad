"""GPU speed options of a run: fused/foreach optimizers, cuDNN autotuning, channels-last and torch.compile.

All of them leave the CPU eager path as it was by default (same kernels in the same order), so CPU results do not
move; on CUDA they are what timm's train.py offers (``--channels-last``, ``--torchcompile``, fused optimizers),
with the curriculum's part added: the model is compiled with static shapes, so each stage size compiles once and
no step pays for dynamic-shape guards; the time spent compiling is measured apart from the training time
(:class:`CompileClock`), so a curriculum's cost comparison stays honest (it pays one compilation per stage).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
import torch._dynamo
from torch import nn

from ..config import optimizer_options

__all__ = ["optimizer_kernel_options", "resolve_compile", "compile_module", "compiled_graphs", "recompile_room",
           "CompileClock", "use_cudnn_autotuning", "to_channels_last"]

COMPILE_MODES = ("off", "model", "model+pipeline")


def optimizer_kernel_options(opt: str, mode: str, device: torch.device) -> dict[str, Any]:
    """Keyword arguments for timm's ``create_optimizer_v2``: ``fused`` / ``foreach`` per ``optim.fused`` (whose
    explicit choices the configuration has checked against the optimizer).

    ``auto``: fused on CUDA where the optimizer class takes ``fused`` (torch's AdamW, Adam, SGD), else foreach on
    CUDA; nothing on the CPU (torch's default there is the per-tensor loop: CPU results stay as they were).
    ``off``: the per-tensor loop."""
    if mode not in ("auto", "fused", "foreach", "off"):
        raise ValueError(f"optim.fused must be auto, fused, foreach or off, got {mode!r}")
    if mode == "auto" and device.type != "cuda":
        return {}
    takes = optimizer_options(opt) or set()  # an unknown name: create_optimizer_v2 reports it
    if mode == "auto":
        mode = "fused" if "fused" in takes else "foreach" if "foreach" in takes else "default"
    if mode == "fused":
        return {"fused": True, "foreach": False}
    if mode == "foreach":
        return {"foreach": True}
    return {"foreach": False} if mode == "off" and "foreach" in takes else {}


def use_cudnn_autotuning(device: torch.device, deterministic: bool) -> None:
    """cuDNN picks the fastest convolution algorithm per shape (once per stage size) unless the run must be
    deterministic: a process-wide switch, set once at the start of a run."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 4-d batch in NHWC memory order (no-op when it already is)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def resolve_compile(mode: str, device: torch.device) -> str:
    """``train.compile`` for ``device``: ``auto`` is ``model`` on CUDA and ``off`` elsewhere."""
    if mode == "auto":
        return "model" if device.type == "cuda" else "off"
    if mode not in COMPILE_MODES:
        raise ValueError(f"train.compile must be auto, {', '.join(COMPILE_MODES)}, got {mode!r}")
    return mode


def compile_module(fn: nn.Module | Callable, backend: str = "inductor") -> Callable:
    """``torch.compile`` with static shapes: a new input size (a new stage) compiles its own graph once instead of
    turning the first one into a dynamic-shape graph."""
    return torch.compile(fn, backend=backend, dynamic=False)


def recompile_room(sizes: int):
    """A context in which torch.compile may keep one static graph per stage size (``sizes`` distinct sizes, e.g.
    EfficientTrain++'s ten): dynamo's default limit of 8 graphs per function would otherwise fall back to eager."""
    limit = max(torch._dynamo.config.recompile_limit, sizes + 2)  # + a batch shortened by unreadable images
    return torch._dynamo.config.patch(recompile_limit=limit)


def compiled_graphs() -> int:
    """Graphs torch.compile has built in this process so far (dynamo's counter of distinct graphs)."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


class CompileClock:
    """Time spent in steps that compiled a graph (the first step at each new size), kept apart from training time.

    Usage per step: ``clock.start()``, run the step, ``clock.stop(sync)``; ``sync`` waits for the device and is
    called only when the step compiled something (once per stage), so steady-state steps stay free of host syncs.
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.seconds = 0.0
        self.cpu_seconds = 0.0  # this process's CPU time in those steps (inductor's worker processes not counted)
        self.compilations = 0
        self._t0 = self._cpu0 = 0.0
        self._graphs = 0

    def start(self) -> None:
        if self.enabled:
            self._graphs = compiled_graphs()
            self._t0, self._cpu0 = time.perf_counter(), time.process_time()

    def stop(self, sync: Callable[[], None]) -> float:
        """The seconds of this step that count as compilation (0.0 when it compiled nothing)."""
        if not self.enabled or compiled_graphs() == self._graphs:
            return 0.0
        sync()
        spent = time.perf_counter() - self._t0
        self.seconds += spent
        self.cpu_seconds += time.process_time() - self._cpu0
        self.compilations += compiled_graphs() - self._graphs
        return spent
