"""Training FLOPs of a model at each input size, counted with ``torch.utils.flop_counter.FlopCounterMode``.

The count runs one forward + backward pass on a deep copy (resized for ``set_input_size`` models) inside
``torch.random.fork_rng``, so the model being trained, its BatchNorm statistics and the global RNG streams are
untouched. A size the model cannot take surfaces here as a :class:`~efficienttrain_ext.curriculum.ScheduleError`
naming the size, before anything trains.
"""

from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .curriculum import ScheduleError
from .resize import can_resize, current_input_size

__all__ = ["train_flops_per_image", "flops_by_size"]


def train_flops_per_image(model: nn.Module, size: int, in_chans: int = 3, batch: int = 2) -> float:
    """Forward + backward FLOPs per image at ``size`` x ``size`` (batch 2: BatchNorm needs > 1 value)."""
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        m = copy.deepcopy(model)
        m.train()
        if can_resize(m) and current_input_size(m) != size:
            m.set_input_size(img_size=(size, size))
        x = torch.randn(batch, in_chans, size, size, device=device)
        counter = FlopCounterMode(display=False)
        try:
            with counter:
                out = m(x)
                out = out[0] if isinstance(out, (tuple, list)) else out
                out.float().sum().backward()
        except (RuntimeError, ValueError, AssertionError) as e:
            raise ScheduleError(f"model {type(model).__name__} cannot take {size}x{size} inputs: {e}") from e
        finally:
            del m
    return counter.get_total_flops() / batch


def flops_by_size(model: nn.Module, sizes: Iterable[int], in_chans: int = 3) -> dict[int, float]:
    return {s: train_flops_per_image(model, s, in_chans) for s in sorted(set(sizes))}
