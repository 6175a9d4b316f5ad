"""In-process input-size switches for timm models, with optimizer state and EMA weights carried along.

ConvNets take any size and need nothing. ViT/DeiT and Swin have ``set_input_size``, which *replaces* Parameter
objects (ViT's ``pos_embed``; Swin's ``relative_position_bias_table`` s when the window changes). An optimizer
still holding the old Parameters would silently stop updating them and its moments would no longer match their
shapes, so :func:`switch_input_size` re-points the optimizer at the new Parameters and resamples each moment
with the very transform timm applied to the weight (replayed on a copy of the model), and resizes EMA copies.
"""

from __future__ import annotations

import copy
import warnings
from typing import Iterable

import torch
from torch import nn

from .sizes import can_resize, current_input_size

__all__ = ["switch_input_size", "resized_view"]


def _named_params(model: nn.Module) -> dict[str, nn.Parameter]:
    return dict(model.named_parameters(remove_duplicate=False))


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model) if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def switch_input_size(
    model: nn.Module,
    size: int,
    optimizer: torch.optim.Optimizer | Iterable[torch.optim.Optimizer] | None = None,
    emas: Iterable[nn.Module] = (),
) -> list[str]:
    """Rebuild ``model`` (in place) for ``size`` x ``size`` inputs; returns the names of replaced Parameters.

    ``optimizer``: one optimizer or several (e.g. Lightning's ``trainer.optimizers``), each re-pointed at the new
    Parameters. ``emas`` are model copies (e.g. ``ModelEmaV3.module``) resized the same way. A DDP wrapper must be
    rebuilt by the caller afterwards when Parameters were replaced (it holds references to the old ones).
    """
    model = _unwrap(model)
    emas = [_unwrap(e) for e in emas]
    if not can_resize(model) or current_input_size(model) == size:
        return []
    optimizers = [optimizer] if isinstance(optimizer, torch.optim.Optimizer) else list(optimizer or ())
    before = _named_params(model)
    has_state = any(opt.state.get(p) for opt in optimizers for p in before.values())
    template = copy.deepcopy(model) if has_state else None  # pre-switch copy on which state resampling is replayed

    _resize_keeping_flags(model, size)
    for ema in emas:
        _resize_keeping_flags(ema, size)
    after = _named_params(model)
    if set(after) != set(before):
        raise RuntimeError(f"set_input_size changed the parameter names: {sorted(set(after) ^ set(before))}")
    replaced = [n for n in before if after[n] is not before[n]]
    for opt in optimizers if replaced else ():
        _repoint_optimizer(opt, before, after, replaced, template, size)
    return replaced


def _resize_keeping_flags(model: nn.Module, size: int) -> None:
    """``set_input_size``, with each replaced Parameter as trainable as the one it replaces (timm makes new
    Parameters with ``requires_grad=True``: a frozen ``pos_embed`` or an EMA copy would silently start training,
    and DDP would then wait for gradients that never come)."""
    flags = {n: p.requires_grad for n, p in _named_params(model).items()}
    model.set_input_size(img_size=(size, size))
    for n, p in _named_params(model).items():
        if n in flags and p.requires_grad != flags[n]:
            p.requires_grad_(flags[n])


def _repoint_optimizer(
    optimizer: torch.optim.Optimizer,
    before: dict[str, nn.Parameter],
    after: dict[str, nn.Parameter],
    replaced: list[str],
    template: nn.Module | None,
    size: int,
) -> None:
    old_to_new = {id(before[n]): after[n] for n in replaced}
    for group in optimizer.param_groups:
        group["params"] = [old_to_new.get(id(p), p) for p in group["params"]]

    # state tensors shaped like their parameter are resampled exactly as timm resampled the parameter
    keys = sorted({k for n in replaced for k, v in optimizer.state.get(before[n], {}).items()
                   if torch.is_tensor(v) and v.shape == before[n].shape})
    resampled: dict[str, dict[str, torch.Tensor]] = {}
    for key in keys:
        shadow = copy.deepcopy(template)
        params = _named_params(shadow)
        nonneg = {}
        for n in replaced:
            v = optimizer.state.get(before[n], {}).get(key)
            if torch.is_tensor(v) and v.shape == before[n].shape:
                params[n].data = v.detach().clone()
                nonneg[n] = bool((v >= 0).all())
        shadow.set_input_size(img_size=(size, size))
        new = _named_params(shadow)
        for n, was_nonneg in nonneg.items():
            t = new[n].detach().to(after[n].device)
            if was_nonneg:
                t = t.clamp_min(0)  # second moments must stay >= 0 after (bicubic) interpolation
            resampled.setdefault(n, {})[key] = t
        del shadow

    for n in replaced:
        old_state = optimizer.state.pop(before[n], None)
        if not old_state:
            continue
        new_state = {}
        for k, v in old_state.items():
            if k in resampled.get(n, {}):
                new_state[k] = resampled[n][k].to(dtype=v.dtype).contiguous()
            elif torch.is_tensor(v) and v.dim() > 0 and v.shape != after[n].shape:
                warnings.warn(
                    f"optimizer state {k!r} of {n} has shape {tuple(v.shape)} that does not follow the parameter; "
                    "it is reset at the size switch", stacklevel=3)
                new_state = {}
                break
            else:
                new_state[k] = v  # scalars such as Adam's step
        if new_state:
            optimizer.state[after[n]] = new_state


def resized_view(model: nn.Module, size: int) -> nn.Module:
    """``model`` itself when it can run at ``size`` as is, else a resized deep copy (for evaluation at another size
    without disturbing the trained weights: resampling down then up again would not be lossless)."""
    model = _unwrap(model)
    if not can_resize(model) or current_input_size(model) == size:
        return model
    view = copy.deepcopy(model)
    view.set_input_size(img_size=(size, size))
    return view
