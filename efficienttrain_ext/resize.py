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

from .curriculum import SizeRule

__all__ = ["current_input_size", "size_rule_for_model", "switch_input_size", "resized_view", "can_resize"]


def can_resize(model: nn.Module) -> bool:
    """Whether the model has a size-dependent part that timm can rebuild (``set_input_size``)."""
    return callable(getattr(model, "set_input_size", None))


def current_input_size(model: nn.Module) -> int | None:
    """The square input size a ``set_input_size`` model is built for (None for size-agnostic models)."""
    pe = getattr(model, "patch_embed", None)
    img_size = getattr(pe, "img_size", None)
    if img_size is None:
        return None
    h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if h != w:
        raise ValueError(f"only square inputs are supported, the model is built for {h}x{w}")
    return int(h)


def _max_reduction(model: nn.Module) -> int:
    info = getattr(model, "feature_info", None)
    try:
        return max(int(i["reduction"]) for i in info) if info else 32
    except (TypeError, KeyError, ValueError):
        return 32


def size_rule_for_model(model: nn.Module, multiple: int | None = None) -> SizeRule:
    """Sizes the model takes.

    * ``set_input_size`` models (ViT/DeiT: patch size; Swin: patch size x 2^(stages-1), so that every stage's
      feature map stays whole): multiples of the largest feature reduction, at least one such step.
    * models with a ``fixed_input_size`` config and no ``set_input_size``: their construction size only.
    * other ConvNets take any size; sizes are kept even (as the reference's FFT crop required, and it halves
      the number of distinct shapes for cuDNN autotuning). The true minimum (e.g. ConvNeXt needs >= 32) is
      found by running the model at each size before training (``etrain schedule`` / ``etrain train``).

    ``multiple`` forces a step (must itself be a multiple of the model's step).
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if can_resize(model):
        step = _max_reduction(model)
        pe = getattr(model, "patch_embed", None)
        patch = getattr(pe, "patch_size", None)
        if patch is not None:
            p = patch if isinstance(patch, int) else max(patch)
            step = max(step, int(p))
        reason = f"{type(model).__name__}: patch grid and stage resolutions must be whole"
        if multiple is not None:
            if multiple % step:
                raise ValueError(f"size multiple {multiple} must be a multiple of the model's step {step}")
            step = multiple
        return SizeRule(step=step, min_size=step, reason=reason)
    if cfg.get("fixed_input_size", False):
        size = int(cfg.get("input_size", (3, 224, 224))[-1])
        return SizeRule(fixed=size, reason=f"{type(model).__name__} has a fixed input size")
    return SizeRule(step=multiple or 2, min_size=2, reason="")


def _named_params(model: nn.Module) -> dict[str, nn.Parameter]:
    return dict(model.named_parameters(remove_duplicate=False))


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model) if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def switch_input_size(
    model: nn.Module,
    size: int,
    optimizer: torch.optim.Optimizer | None = None,
    emas: Iterable[nn.Module] = (),
) -> list[str]:
    """Rebuild ``model`` (in place) for ``size`` x ``size`` inputs; returns the names of replaced Parameters.

    ``emas`` are model copies (e.g. ``ModelEmaV3.module``) resized the same way. A DDP wrapper must be rebuilt
    by the caller afterwards when Parameters were replaced (it holds references to the old ones).
    """
    model = _unwrap(model)
    emas = [_unwrap(e) for e in emas]
    if not can_resize(model) or current_input_size(model) == size:
        return []
    before = _named_params(model)
    has_state = optimizer is not None and any(optimizer.state.get(p) for p in before.values())
    template = copy.deepcopy(model) if has_state else None  # pre-switch copy on which state resampling is replayed

    model.set_input_size(img_size=(size, size))
    for ema in emas:
        ema.set_input_size(img_size=(size, size))
    after = _named_params(model)
    if set(after) != set(before):
        raise RuntimeError(f"set_input_size changed the parameter names: {sorted(set(after) ^ set(before))}")
    replaced = [n for n in before if after[n] is not before[n]]
    if optimizer is not None and replaced:
        _repoint_optimizer(optimizer, before, after, replaced, template, size)
    return replaced


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
