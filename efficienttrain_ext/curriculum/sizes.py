"""Which input sizes a model takes: :class:`SizeRule` and :func:`size_rule_for_model`.

Every curriculum size B is rounded to the model's rule (nearest multiple of its step, ties up) and checked against
its minimum before anything trains. A model states its rule in one of three ways, in this order:

* ``curriculum.size_multiple`` / ``curriculum.min_size`` in the configuration (the user's declaration, for any
  model the probe below gets wrong);
* an ``input_size_rule()`` method returning ``(step, min_size)`` (efficienttrain_ext's own models, e.g. CSWin);
* probing: ``set_input_size`` models (timm ViT/DeiT, Swin) need whole patch grids and stage resolutions, models
  with a ``fixed_input_size`` config take only their construction size, other ConvNets take any (even) size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from ..errors import ScheduleError

__all__ = ["SizeRule", "size_rule_for_model", "can_resize", "current_input_size", "DECLARE_HINT"]

DECLARE_HINT = ("declare the sizes the model takes with curriculum.size_multiple=K (every size a multiple of K) and "
                "curriculum.min_size=S, or give the model an input_size_rule() method returning (step, min_size)")


@dataclass(frozen=True)
class SizeRule:
    """Input sizes a model accepts: multiples of ``step`` in ``[min_size, max_size]``.

    ``fixed`` is set for models that only run at their construction size (no ``set_input_size`` and a
    ``fixed_input_size`` pretrained config); any other size is then an error.
    """

    step: int = 1
    min_size: int = 1
    max_size: int | None = None
    fixed: int | None = None
    reason: str = ""

    def round(self, size: float) -> int:
        """The nearest size the model takes (ties up), never below one step."""
        if self.fixed is not None:
            return self.fixed
        rounded = int(math.floor(size / self.step + 0.5)) * self.step  # nearest multiple, ties up
        return max(rounded, self.step)

    def check(self, size: int, what: str = "size") -> None:
        why = f" ({self.reason})" if self.reason else ""
        if self.fixed is not None and size != self.fixed:
            raise ScheduleError(f"{what} {size}: the model only takes {self.fixed}x{self.fixed} inputs{why}")
        if size % self.step:
            raise ScheduleError(f"{what} {size} is not a multiple of {self.step}{why}")
        if size < self.min_size:
            raise ScheduleError(f"{what} {size} is below the model's minimum input size {self.min_size}{why}")
        if self.max_size is not None and size > self.max_size:
            raise ScheduleError(f"{what} {size} exceeds the model's maximum input size {self.max_size}{why}")


def can_resize(model: nn.Module) -> bool:
    """Whether the model has a size-dependent part that it can rebuild (``set_input_size``)."""
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


def _probed(model: nn.Module) -> SizeRule:
    declared = getattr(model, "input_size_rule", None)
    if callable(declared):
        step, min_size = declared()
        return SizeRule(step=int(step), min_size=int(min_size),
                        reason=f"{type(model).__name__}.input_size_rule()")
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if can_resize(model):
        step = _max_reduction(model)
        patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
        if patch is not None:
            step = max(step, int(patch if isinstance(patch, int) else max(patch)))
        return SizeRule(step=step, min_size=step,
                        reason=f"{type(model).__name__}: patch grid and stage resolutions must be whole")
    if cfg.get("fixed_input_size", False):
        return SizeRule(fixed=int(cfg.get("input_size", (3, 224, 224))[-1]),
                        reason=f"{type(model).__name__} has a fixed input size")
    # any size; even sizes, as the reference's FFT crop required (and half the shapes for cuDNN autotuning)
    return SizeRule(step=2, min_size=2)


def size_rule_for_model(model: nn.Module, multiple: int | None = None, min_size: int | None = None) -> SizeRule:
    """Sizes ``model`` takes (module docstring). ``multiple`` / ``min_size`` are the user's declaration
    (``curriculum.size_multiple`` / ``curriculum.min_size``); a multiple must itself be a multiple of the step of a
    model whose step is structural (patch grid, stripes). The true minimum of a ConvNet (e.g. ConvNeXt needs >= 32)
    is found by running it at each size before training (the FLOP count)."""
    rule = _probed(model)
    if rule.fixed is not None:
        return rule
    step, low = rule.step, rule.min_size
    if multiple is not None:
        if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
            raise ScheduleError(f"curriculum.size_multiple must be a positive integer, got {multiple!r}")
        if rule.reason and multiple % step:
            raise ScheduleError(f"curriculum.size_multiple {multiple} must be a multiple of the model's step {step} "
                                f"({rule.reason})")
        step = multiple
        low = max(low, multiple) if rule.reason else multiple
    if min_size is not None:
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
            raise ScheduleError(f"curriculum.min_size must be a positive integer, got {min_size!r}")
        low = max(low, min_size) if rule.reason else min_size
    return SizeRule(step=step, min_size=low, reason=rule.reason)
