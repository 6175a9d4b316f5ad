"""Training FLOPs of a model at each input size, counted with ``torch.utils.flop_counter.FlopCounterMode``.

The count runs one forward + backward pass on a deep copy (resized for ``set_input_size`` models) inside
``torch.random.fork_rng``, so the model being trained, its BatchNorm statistics and the global RNG streams are
untouched. A size the model cannot take surfaces here as a :class:`~efficienttrain_ext.errors.ScheduleError`
naming the size and how to declare the model's sizes, before anything trains.

torch's formula for ``convolution_backward`` counts the weight gradient of a grouped convolution as if it were
dense (groups times too many: 98x the forward FLOPs for a 96-channel depthwise 7x7 instead of 2x), which made
ConvNeXt, CAFormer, PVT-v2 and CSWin (LePE) look ~3x more expensive to train than they are. :func:`conv_backward_flop`
replaces it with one that honours ``groups``.
"""

from __future__ import annotations

import copy
from math import prod
from typing import Iterable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import ScheduleError
from .sizes import DECLARE_HINT, can_resize, current_input_size

__all__ = ["train_flops_per_image", "forward_flops_per_image", "flops_by_size", "conv_backward_flop",
           "flop_counter"]


def _conv_flops(batch: int, c_out: int, c_in_per_group: int, kernel: Iterable[int], out_spatial: Iterable[int]) -> int:
    # one multiply-add (2 FLOPs) per output element, kernel tap and input channel of its group
    return 2 * batch * c_out * c_in_per_group * prod(kernel) * prod(out_spatial)


def conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                       _output_padding, groups, output_mask, out_shape=None, **kwargs) -> int:
    """FLOPs of ``aten.convolution_backward``: the input gradient (a transposed convolution of grad_out with the
    weight) and the weight gradient (a convolution of the input with grad_out), each as many multiply-adds as the
    forward convolution: ``2 * N * C_out * (C_in / groups) * prod(kernel) * prod(spatial of the conv's output)``."""
    n = x_shape[0]
    c_out, c_in_g, *kernel = w_shape  # a transposed conv's weight is [C_in, C_out / groups, ...]
    spatial = (x_shape if transposed else grad_out_shape)[2:]  # where the forward count takes it (conv_flop_count)
    one = _conv_flops(n, c_out, c_in_g, kernel, spatial)
    return one * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def flop_counter() -> FlopCounterMode:
    """torch's FlopCounterMode with the grouped-convolution backward fixed."""
    return FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flop})


def _count(model: nn.Module, size: int, in_chans: int, batch: int, backward: bool) -> float:
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        m = copy.deepcopy(model)
        m.train(backward)
        x = torch.randn(batch, in_chans, size, size, device=device)
        counter = flop_counter()
        try:
            if can_resize(m) and current_input_size(m) != size:
                m.set_input_size(img_size=(size, size))
            with counter, torch.set_grad_enabled(backward):
                out = m(x)
                out = out[0] if isinstance(out, (tuple, list)) else out
                if backward:
                    out.float().sum().backward()
        except (RuntimeError, ValueError, AssertionError, TypeError) as e:
            raise ScheduleError(f"model {type(model).__name__} cannot take {size}x{size} inputs: {e}; if the "
                                f"curriculum's sizes are wrong for this model, {DECLARE_HINT}") from e
        finally:
            del m
    return counter.get_total_flops() / batch


def train_flops_per_image(model: nn.Module, size: int, in_chans: int = 3, batch: int = 2) -> float:
    """Forward + backward FLOPs per image at ``size`` x ``size`` (batch 2: BatchNorm needs > 1 value)."""
    return _count(model, size, in_chans, batch, backward=True)


def forward_flops_per_image(model: nn.Module, size: int, in_chans: int = 3, batch: int = 1) -> float:
    """Forward FLOPs per image at ``size`` x ``size`` in eval mode (2 x the MACs that papers report)."""
    return _count(model, size, in_chans, batch, backward=False)


def flops_by_size(model: nn.Module, sizes: Iterable[int], in_chans: int = 3) -> dict[int, float]:
    """Train FLOPs per image at each distinct size."""
    return {s: train_flops_per_image(model, s, in_chans) for s in sorted(set(sizes))}
