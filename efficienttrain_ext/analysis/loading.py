"""Models to analyse: an etrain checkpoint (its own configuration builds the model; trained or EMA weights) or a
plain state dict / timm checkpoint file (``.pth``, ``.safetensors``; the model comes from the configuration given
with ``-c`` / ``--set model.name=...``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from timm.models import load_checkpoint
from torch import nn

from ..config import Config, apply_overrides, config_from_dict
from ..curriculum.switching import resized_view, switch_input_size
from ..engine import checkpoint as ckpt_io
from ..engine.model_factory import create_model
from ..errors import CheckpointError

__all__ = ["AnalysedModel", "load_model", "checkpoint_config", "is_etrain_checkpoint"]


@dataclass
class AnalysedModel:
    label: str
    path: str
    model: nn.Module  # in eval mode, at the final size
    cfg: Config


def _file(path: str) -> str:
    return os.path.join(path, "last.pt") if os.path.isdir(path) else path


def is_etrain_checkpoint(path: str) -> bool:
    path = _file(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} not found")
    if path.endswith(".safetensors"):
        return False
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # not a torch file, truncated, ...
        raise CheckpointError(f"cannot read {path} as a torch file: {e}") from e
    return isinstance(obj, dict) and obj.get("format") == ckpt_io.FORMAT


def checkpoint_config(path: str) -> Config | None:
    """The configuration an etrain checkpoint was trained with (None for a plain state dict)."""
    return config_from_dict(ckpt_io.load(_file(path))["config"]) if is_etrain_checkpoint(path) else None


def _label(path: str) -> str:
    path = os.path.normpath(os.path.abspath(path))
    if os.path.basename(path) in ("last.pt",) or os.path.isdir(path):
        d = path if os.path.isdir(path) else os.path.dirname(path)
        return "/".join(d.split(os.sep)[-2:])
    return os.path.splitext(os.path.basename(path))[0]


def load_model(path: str, cfg: Config, num_classes: int, weights: str = "model", overrides: list[str] = (),
               label: str | None = None) -> AnalysedModel:
    """The model of ``path`` at ``cfg.data.final_size`` (the evaluation data's) in eval mode. An etrain checkpoint builds its model from its
    own configuration (``overrides`` applied) and loads ``weights`` (``model`` or ``ema``); a state dict is loaded
    (strictly) into ``cfg``'s model with ``num_classes`` outputs."""
    if weights not in ("model", "ema"):
        raise CheckpointError(f"weights must be model or ema, got {weights!r}")
    file = _file(path)
    if is_etrain_checkpoint(file):
        ck = ckpt_io.load(file)
        mcfg = apply_overrides(config_from_dict(ck["config"]), list(overrides))
        model = create_model(mcfg, num_classes)
        switch_input_size(model, ck["input_size"])  # a ViT's pos_embed has the shape of the size it was saved at
        state = ck["model"] if weights == "model" else ck["ema"]
        if state is None:
            raise CheckpointError(f"{file} has no EMA weights (train.ema was off); use --weights model")
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(f"{file}: the weights do not fit the model of its configuration with "
                                  f"{num_classes} classes (the evaluation data's): {e}") from e
    else:
        mcfg = cfg
        model = create_model(mcfg, num_classes)
        try:
            load_checkpoint(model, file, use_ema=weights == "ema", strict=True)
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(f"{file} does not load into {mcfg.model.name} with {num_classes} classes: {e}; "
                                  "give the model with -c CONFIG or --set model.name=...") from e
    model = resized_view(model, cfg.data.final_size)  # evaluated at the evaluation data's size
    model.eval()
    return AnalysedModel(label or _label(path), path, model, mcfg)
