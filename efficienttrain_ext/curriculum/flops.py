"""Training FLOPs of a model at each input size, counted with ``torch.utils.flop_counter.FlopCounterMode``.

The count runs one forward + backward pass on a deep copy (resized for ``set_input_size`` models) inside
``torch.random.fork_rng``, so the model being trained, its BatchNorm statistics and the global RNG streams are
untouched. A size the model cannot take surfaces here as a :class:`~efficienttrain_ext.errors.ScheduleError`
naming the size and how to declare the model's sizes, before anything trains.

torch's formula for ``convolution_backward`` counts the weight gradient of a grouped convolution as if it were
dense (groups times too many: 98x the forward FLOPs for a 96-channel depthwise 7x7 instead of 2x), which made
ConvNeXt, CAFormer, PVT-v2 and CSWin (LePE) look ~3x more expensive to train than they are. :func:`conv_backward_flop`
replaces it with one that honours ``groups``.

torch has no formula for the CPU kernel of ``F.scaled_dot_product_attention``
(``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward), which every timm attention model (ViT/DeiT,
Swin, PVT-v2, CAFormer) dispatches to on the CPU, so their attention products counted 0 there. :func:`sdpa_cpu_flop`
and :func:`sdpa_cpu_backward_flop` count them with torch's own formulas for the CUDA kernels (forward: the two
products ``QK^T`` and ``PV``, ``4 B H N_q N_k d``; backward: the five of flash attention, scores recomputed, 2.5x
the forward), so a model counts the same on either device.
"""

from __future__ import annotations

import copy
from math import prod
from typing import Callable, Iterable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from ..errors import ScheduleError
from .sizes import DECLARE_HINT, can_resize, current_input_size

__all__ = ["train_flops_per_image", "forward_flops_per_image", "flops_by_size", "conv_backward_flop",
           "sdpa_cpu_flop", "sdpa_cpu_backward_flop", "flop_counter"]


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


def sdpa_cpu_flop(query_shape, key_shape, value_shape, *_args, out_shape=None, **_kwargs) -> int:
    """FLOPs of ``aten._scaled_dot_product_flash_attention_for_cpu`` (as torch counts the CUDA kernels; a causal
    mask is not discounted, as there)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def sdpa_cpu_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *_args, out_shape=None,
                           **_kwargs) -> int:
    """FLOPs of ``aten._scaled_dot_product_flash_attention_for_cpu_backward`` (as torch counts the CUDA kernels)."""
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def flop_counter() -> FlopCounterMode:
    """torch's FlopCounterMode with the grouped-convolution backward fixed and the CPU attention kernel counted."""
    aten = torch.ops.aten
    return FlopCounterMode(display=False, custom_mapping={
        aten.convolution_backward: conv_backward_flop,
        aten._scaled_dot_product_flash_attention_for_cpu: sdpa_cpu_flop,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: sdpa_cpu_backward_flop,
    })


Counter = Callable[[], FlopCounterMode]


def _count(model: nn.Module, size: int, in_chans: int, batch: int, backward: bool, counter: Counter) -> float:
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        m = copy.deepcopy(model)
        m.train(backward)
        x = torch.randn(batch, in_chans, size, size, device=device)
        mode = counter()
        try:
            if can_resize(m) and current_input_size(m) != size:
                m.set_input_size(img_size=(size, size))
            with mode, torch.set_grad_enabled(backward):
                out = m(x)
                out = out[0] if isinstance(out, (tuple, list)) else out
                if backward:
                    out.float().sum().backward()
        except (RuntimeError, ValueError, AssertionError, TypeError) as e:
            raise ScheduleError(f"model {type(model).__name__} cannot take {size}x{size} inputs: {e}; if the "
                                f"curriculum's sizes are wrong for this model, {DECLARE_HINT}") from e
        finally:
            del m
    return mode.get_total_flops() / batch


def train_flops_per_image(model: nn.Module, size: int, in_chans: int = 3, batch: int = 2,
                          counter: Counter = flop_counter) -> float:
    """Forward + backward FLOPs per image at ``size`` x ``size`` (batch 2: BatchNorm needs > 1 value).
    ``counter`` makes the FlopCounterMode (default :func:`flop_counter`; torch's own to compare with it)."""
    return _count(model, size, in_chans, batch, True, counter)


def forward_flops_per_image(model: nn.Module, size: int, in_chans: int = 3, batch: int = 1,
                            counter: Counter = flop_counter) -> float:
    """Forward FLOPs per image at ``size`` x ``size`` in eval mode (2 x the MACs that papers report). A model on
    the ``meta`` device is counted without computing anything (its attention then runs torch's math path, which
    counts the same forward products)."""
    return _count(model, size, in_chans, batch, False, counter)


def flops_by_size(model: nn.Module, sizes: Iterable[int], in_chans: int = 3,
                  counter: Counter = flop_counter) -> dict[int, float]:
    """Train FLOPs per image at each distinct size."""
    return {s: train_flops_per_image(model, s, in_chans, counter=counter) for s in sorted(set(sizes))}
