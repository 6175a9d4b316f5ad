"""``TimmBackbone``: any timm model as a multi-scale feature extractor in mmdet's ``MODELS`` registry."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import timm
import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmdet.registry import MODELS
from timm.layers import LayerNorm2d
from torch import nn

from .weights import WeightsError, load_into_features, load_source

try:  # efficienttrain_ext's own timm models (CSWin): registered when the package is importable
    import efficienttrain_ext.models  # noqa: F401
except ImportError:  # pragma: no cover - detection glue used without efficienttrain_ext
    pass

__all__ = ["TimmBackbone"]


def _check_model_name(name: str) -> None:
    if not isinstance(name, str) or not timm.is_model(name):
        stem = str(name).split("_")[0]
        close = timm.list_models(f"*{stem}*")[:8] if stem else []
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise WeightsError(f"TimmBackbone: unknown timm model {name!r}{hint}")


@MODELS.register_module()
class TimmBackbone(BaseModule):
    """A timm model with ``features_only=True`` returning NCHW maps at the strides of ``out_indices``.

    Args:
        model_name: timm model name (``resnet50``, ``swin_tiny_patch4_window7_224``, ``convnext_tiny``, ...).
            ``None`` takes the name (and ``model_kwargs``) from the ``etrain`` checkpoint in ``checkpoint``.
        out_indices: timm feature indices; ``None`` picks the stride-``out_strides`` ones.
        out_strides: used when ``out_indices`` is None, default (8, 16, 32).
        checkpoint: weights to load at construction: an ``etrain train`` checkpoint or run directory, a file from
            ``detection/tools/export_mmdet.py``, or a timm state dict. ``None``: random init (or
            ``init_cfg=dict(type='Pretrained', checkpoint=...)``, loaded by ``init_weights`` with the same rules).
        weights: ``auto`` (EMA if the etrain checkpoint has it), ``model`` or ``ema``.
        frozen_stages: -1 freezes nothing; k >= 0 freezes the stem and the first k stride>=4 stages.
        norm_eval: keep BatchNorm layers in eval mode while training.
        model_kwargs: extra ``timm.create_model`` arguments (``drop_path_rate``, ...).
        out_norm_eps: ``None`` returns timm's features as they are; a float adds a channels-first LayerNorm with that
            eps on every returned level (``out_norms.k``), as the Swin and ConvNeXt detection backbones do
            (``norm{i}`` per out index; eps 1e-5 in Swin, 1e-6 in ConvNeXt). Freshly initialised (weight 1, bias 0):
            classification checkpoints have no such layers.
    """

    def __init__(self, model_name: str | None = None, out_indices: Sequence[int] | None = None,
                 out_strides: Sequence[int] = (8, 16, 32), checkpoint: str | None = None, weights: str = "auto",
                 frozen_stages: int = -1, norm_eval: bool = False, model_kwargs: dict | None = None,
                 out_norm_eps: float | None = None, init_cfg: dict | None = None):
        super().__init__(init_cfg=init_cfg)
        model_kwargs = dict(model_kwargs or {})
        if model_name is None:
            if checkpoint is None:
                raise WeightsError("TimmBackbone: give model_name, or an etrain checkpoint to take it from")
            _, info = load_source(checkpoint, weights)
            if not info.get("model_name"):
                raise WeightsError(f"TimmBackbone: {checkpoint} does not name its architecture; set model_name")
            model_name = info["model_name"]
            model_kwargs = {**info.get("model_kwargs", {}), **model_kwargs}
        _check_model_name(model_name)
        self.model_name = model_name
        model_kwargs.pop("num_classes", None)
        if "swin" in model_name:  # Swin, CSWin: any input size (mmdet pads to 32), masks built per forward
            model_kwargs.setdefault("dynamic_img_size", True)
        probe = timm.create_model(model_name, pretrained=False, features_only=True, **model_kwargs)
        reductions = probe.feature_info.reduction()
        if out_indices is None:
            missing = [s for s in out_strides if s not in reductions]
            if missing:
                raise WeightsError(f"TimmBackbone: {model_name} has no features at strides {missing} "
                                   f"(available: {reductions})")
            out_indices = [reductions.index(s) for s in out_strides]
        out_indices = tuple(int(i) for i in out_indices)
        bad = [i for i in out_indices if not -len(reductions) <= i < len(reductions)]
        if bad:
            raise WeightsError(f"TimmBackbone: out_indices {bad} out of range for {model_name} "
                               f"({len(reductions)} feature levels, strides {reductions})")
        del probe
        self.body = timm.create_model(model_name, pretrained=False, features_only=True, out_indices=out_indices,
                                      **model_kwargs)
        self.out_indices = out_indices
        self.strides = tuple(self.body.feature_info.reduction())
        self.channels = tuple(self.body.feature_info.channels())
        if out_norm_eps is not None and not (isinstance(out_norm_eps, (int, float)) and 0 < out_norm_eps < 1):
            raise WeightsError(f"TimmBackbone: out_norm_eps must be None or a small positive float, got {out_norm_eps!r}")
        self.out_norms = None if out_norm_eps is None else nn.ModuleList(
            LayerNorm2d(c, eps=float(out_norm_eps)) for c in self.channels)
        self.weights = weights
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.load_info: dict[str, Any] | None = None
        if checkpoint is not None:
            self.load_weights(checkpoint, weights)
        self._freeze_stages()

    # ---------------------------------------------------------------- weights
    def load_weights(self, path: str, weights: str | None = None, prefix: str | None = None) -> dict[str, Any]:
        info = load_into_features(self.body, path, which=weights or self.weights, prefix=prefix,
                                  model_name=self.model_name)
        if info.get("model_name") and info["model_name"] != self.model_name:
            print_log(f"TimmBackbone: {path} was trained as {info['model_name']}, loaded into {self.model_name} "
                      "(all tensors matched)", logger="current", level=logging.WARNING)
        self.load_info = info
        print_log(f"TimmBackbone({self.model_name}): loaded {info['loaded']} tensors from {path} "
                  f"[{info.get('weights')}]", logger="current")
        return info

    def init_weights(self) -> None:
        """``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=None)`` goes through :meth:`load_weights`
        (strict: a checkpoint of another architecture is an error, not a silent partial load). timm's own
        initialisation is kept otherwise."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get("type") == "Pretrained":
            self.load_weights(cfg["checkpoint"], prefix=cfg.get("prefix"))
            self._freeze_stages()
        self._is_init = True

    # ---------------------------------------------------------------- freezing
    def _stage_modules(self) -> list[list[nn.Module]]:
        """Children of the feature extractor grouped: [stem, stage1, stage2, ...] (stages = stride >= 4 levels)."""
        info = self.body.feature_info.info  # every level, not only the out_indices
        ends = {f["module"].replace(".", "_") for f in info if f["reduction"] >= 4}
        groups: list[list[nn.Module]] = [[]]  # groups[0]: the stem
        pending: list[nn.Module] = []
        for name, mod in self.body.named_children():
            if name.replace(".", "_") in ends:
                groups.append(pending + [mod])
                pending = []
            elif len(groups) == 1:
                groups[0].append(mod)
            else:
                pending.append(mod)
        return groups

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        for group in self._stage_modules()[: self.frozen_stages + 1]:
            for mod in group:
                mod.eval()
                for p in mod.parameters():
                    p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    # ---------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.body(x)
        if isinstance(feats, dict):
            feats = list(feats.values())
        out = []
        for f, c in zip(feats, self.channels):
            if f.shape[1] != c and f.shape[-1] == c:  # NHWC (Swin and other transformer families)
                f = f.permute(0, 3, 1, 2)
            out.append(f.contiguous())
        if self.out_norms is not None:
            out = [norm(f) for norm, f in zip(self.out_norms, out)]
        return tuple(out)
