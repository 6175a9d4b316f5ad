"""The model of a configuration: a timm model by name, or the user's own (``package.module:factory`` or a module
passed to the Trainer). ``model.imports`` are imported first, so modules that register timm models can be named."""

from __future__ import annotations

import importlib
import os
from typing import Any, Callable

import timm
from torch import nn

from .. import models  # noqa: F401  (registers efficienttrain_ext's own timm models, e.g. cswin_tiny_224)
from ..config import Config
from ..errors import TrainError
from .recipe import drop_path_rate

__all__ = ["create_model", "import_modules", "resolve_factory"]


def import_modules(names: list[str]) -> None:
    """Import each module (e.g. one whose import registers timm models with ``@register_model``)."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise TrainError(f"model.imports: cannot import {name!r}: {e}") from e


def resolve_factory(spec: str) -> Callable[..., nn.Module]:
    """``package.module:callable`` -> the callable."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise TrainError(f"model {spec!r}: a factory is written package.module:callable")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as e:
        raise TrainError(f"model {spec!r}: cannot import {module!r}: {e}") from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise TrainError(f"model {spec!r}: {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TrainError(f"model {spec!r}: {attr!r} is not callable")
    return obj


def _timm_kwargs(cfg: Config) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(cfg.model.kwargs)
    rate = drop_path_rate(cfg)  # under efficienttrain++ scaled with the budget
    if rate is not None:
        kwargs.setdefault("drop_path_rate", rate)
    if cfg.model.pretrained_file:
        if not os.path.isfile(cfg.model.pretrained_file):
            raise TrainError(f"pretrained weights {cfg.model.pretrained_file} not found")
        # timm adapts the file (classifier dropped when num_classes differs, pos_embed resampled)
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": cfg.model.pretrained_file})
    return kwargs


def create_model(cfg: Config, num_classes: int) -> nn.Module:
    """``cfg.model`` with a ``num_classes``-way classifier (random init unless ``model.pretrained_file``)."""
    import_modules(cfg.model.imports)
    name = cfg.model.name
    if ":" in name:
        factory = resolve_factory(name)
        try:
            model = factory(num_classes=num_classes, **cfg.model.kwargs)
        except TypeError as e:
            raise TrainError(f"model factory {name!r} must accept num_classes (and model.kwargs): {e}") from e
        if not isinstance(model, nn.Module):
            raise TrainError(f"model factory {name!r} returned {type(model).__name__}, not an nn.Module")
        return model
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise TrainError(f"unknown timm model {name!r}{hint}; a model of your own: --model package.module:factory, "
                         "or model.imports=[module that registers it with timm]")
    kwargs = _timm_kwargs(cfg)
    try:
        return timm.create_model(name, num_classes=num_classes, **kwargs)
    except TypeError as e:
        hint = "; a model without stochastic depth needs model.drop_path=null" if "drop_path_rate" in kwargs else ""
        raise TrainError(f"model {name!r} cannot be built with {sorted(kwargs)}: {e}{hint}; a factory registered "
                         "with timm is also given timm's pretrained_cfg, pretrained_cfg_overlay and cache_dir (take **kwargs)") from e
