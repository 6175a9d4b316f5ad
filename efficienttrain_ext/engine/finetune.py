"""``etrain finetune``: initialise from an ``etrain train`` / ``etrain mae`` run or checkpoint, or a timm state
dict, and train on a new classification task on the trainer's engine.

* The source (:func:`load_source`): a run directory (its ``last.pt``), an etrain checkpoint (model or EMA weights,
  ``finetune.weights``), or any state-dict file timm reads (``.pth``/``.safetensors``, ``state_dict``/``model``
  wrappers). An ``etrain mae`` checkpoint contributes its encoder; the decoder is dropped.
* From an ``etrain mae`` source the ViT fine-tunes as MAE's ``main_finetune.py`` does by default
  (``--global_pool``): the tokens are average-pooled into a new ``fc_norm`` (timm's ``global_pool='avg'``), the
  encoder's final norm is not used, and the head starts at ``trunc_normal(std=2e-5)`` (``finetune.head_std``).
  A ``model.kwargs`` given on the command line replaces the source's (``global_pool`` included); a linear probe
  keeps the class token, as MAE's ``main_linprobe.py`` does.
* Loading (:func:`load_backbone`) is strict apart from the classifier, which is re-initialised for the new classes:
  every other weight of the model must come from the source and every source weight must have a place in the
  model; the keys that do not are listed and the run stops (``finetune.reinit`` names keys meant to start
  fresh). A ViT position embedding of another patch grid is resampled (timm's bicubic resampling).
* ``optim.layer_decay`` (default 0.65 here) goes through timm's ``param_groups_layer_decay``: for a ViT of L
  blocks, block i (from 0) gets ``lr * decay ** (L - i)``, the stem (patch embedding, tokens, position embedding)
  ``lr * decay ** (L + 1)``, the head ``lr``; timm puts the final norm with the last block (``lr * decay``), where
  BEiT/MAE give it the head's ``lr``.
* ``finetune.linear_probe``: the backbone is frozen (its BatchNorm statistics too, it stays in eval mode) and only a
  new classifier trains, behind an affine-free BatchNorm as in MAE's linear probing (``finetune.probe_bn``).

By default fine-tuning runs at the final size (``curriculum: none``); any curriculum can be given.
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from timm.layers import resample_abs_pos_embed
from timm.models import load_state_dict as timm_load_state_dict
from torch import nn

from ..config import Config
from ..curriculum.sizes import can_resize, current_input_size
from ..errors import CheckpointError, TrainError
from . import checkpoint as ckpt_io
from .atomic import write_text_atomic
from .model_factory import create_model
from .trainer import Trainer

__all__ = ["FINETUNE_DEFAULTS", "LINEAR_PROBE_DEFAULTS", "Source", "LoadReport", "LinearProbe", "load_source",
           "source_model_defaults", "load_backbone", "classifier_names", "run_finetune"]

# `etrain finetune`'s defaults: MAE's ViT-B fine-tuning recipe (He et al. 2022, Table 9; facebookresearch/mae
# main_finetune.py: layer decay 0.65 for ViT-B, no EMA, no gradient clipping, weight decay 0.05, 5 warm-up epochs,
# 100 epochs), with its augmentation (RandAugment m9, mixup 0.8, cutmix 1.0, label smoothing 0.1, erasing 0.25, drop
# path 0.1, which are also this project's defaults)
FINETUNE_DEFAULTS: dict[str, Any] = {
    "curriculum": {"name": "none"},
    "optim": {"base_lr": 5e-4, "base_batch": 256, "layer_decay": 0.65, "warmup_epochs": 5, "clip_grad": None,
              "weight_decay": 0.05},
    "train": {"epochs": 100, "ema": False},
}
# --linear-probe on top (MAE's linear probing, Table 10 there: no augmentation beyond crop + flip, no weight decay)
LINEAR_PROBE_DEFAULTS: dict[str, Any] = {
    "model": {"drop_path": 0.0},
    "aug": {"randaugment": None, "mixup": 0.0, "cutmix": 0.0, "smoothing": 0.0, "reprob": 0.0},
    "optim": {"base_lr": 1e-3, "weight_decay": 0.0, "layer_decay": None, "warmup_epochs": 10},  # MAE Table 10: 10
    "finetune": {"linear_probe": True},
}

_MAE_MARK = "mask_token"  # a key only MaeVisionTransformer state dicts have
MAE_HEAD_STD = 2e-5  # main_finetune.py: trunc_normal_(model.head.weight, std=2e-5)


@dataclass
class Source:
    state_dict: dict[str, torch.Tensor]
    description: str  # what was loaded, for the report
    config: dict[str, Any] | None = None  # the source run's configuration (etrain checkpoints)
    dropped: list[str] = field(default_factory=list)  # source keys deliberately not used (an MAE decoder)
    mae: bool = False  # an etrain mae encoder: fine-tuned the way MAE fine-tunes (module docstring)


@dataclass
class LoadReport:
    loaded: list[str]
    head: list[str]  # re-initialised classifier keys
    reinit: list[str]  # keys left fresh by finetune.reinit
    dropped: list[str]  # source keys not used: the source's classifier, an MAE decoder, finetune.reinit matches
    resampled: list[str]  # position embeddings brought to the model's patch grid
    source: str = ""
    pooled_norm: list[str] = field(default_factory=list)  # a fresh fc_norm in place of the encoder's norm (MAE)

    def to_dict(self) -> dict[str, Any]:
        return dict(source=self.source, loaded=len(self.loaded), head=self.head, reinit=self.reinit,
                    pooled_norm=self.pooled_norm, dropped=self.dropped, resampled=self.resampled, missing=[],
                    unexpected=[])

    def summary(self) -> str:
        parts = [f"initialised from {self.source}: {len(self.loaded)} tensors loaded",
                 f"classifier re-initialised ({', '.join(self.head) or 'none'})"]
        if self.pooled_norm:
            parts.append(f"global average pooling into a fresh {', '.join(self.pooled_norm)} (MAE's fine-tuning; "
                         "the encoder's final norm unused)")
        if self.reinit:
            parts.append(f"{len(self.reinit)} left fresh by finetune.reinit")
        if self.dropped:
            parts.append(f"{len(self.dropped)} source tensors unused ({_short(self.dropped)})")
        if self.resampled:
            parts.append(f"resampled {', '.join(self.resampled)}")
        return "; ".join(parts)


def _short(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def _read(path: str) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, truncated, refused by weights_only
        raise CheckpointError(f"cannot read {path} as a checkpoint or state dict: {e}") from e


def load_source(path: str, weights: str = "auto") -> Source:
    """The weights at ``path`` (module docstring); ``weights``: ``model``, ``ema`` or ``auto`` (EMA if present)."""
    if os.path.isdir(path):
        path = os.path.join(path, "last.pt")
    if not os.path.isfile(path):
        raise CheckpointError(f"finetune source {path} not found (a run directory, an etrain checkpoint or a "
                              "state-dict file)")
    raw = _read(path) if not path.endswith(".safetensors") else None
    if raw is not None and ckpt_io.is_checkpoint(raw):
        ck = ckpt_io.verified(raw, path)
        if weights == "ema" and ck.get("ema") is None:
            raise CheckpointError(f"{path} has no EMA weights (the run had train.ema=false); use "
                                  "finetune.weights=model")
        use_ema = weights == "ema" or (weights == "auto" and ck.get("ema") is not None)
        sd = ck["ema"] if use_ema else ck["model"]
        desc = f"{path} ({'EMA' if use_ema else 'model'} weights, epoch {ck['epoch']})"
        config = ck.get("config")
    else:
        if weights == "ema":
            raise CheckpointError(f"{path} is a plain state dict; finetune.weights=ema needs an etrain checkpoint")
        try:
            sd = timm_load_state_dict(path, use_ema=weights == "auto")
        except Exception as e:
            raise CheckpointError(f"cannot read {path} as a state dict: {e}") from e
        desc, config = f"{path} (state dict)", None
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in sd.items()):
        raise CheckpointError(f"{path} does not hold a state dict (name -> tensor)")
    dropped: list[str] = []
    mae = _MAE_MARK in sd
    if mae:  # an etrain mae model: its encoder is the backbone, the decoder is not used
        dropped = sorted(k for k in sd if not k.startswith("encoder."))
        sd = {k.removeprefix("encoder."): v for k, v in sd.items() if k.startswith("encoder.")}
        desc += ", MAE encoder"
    return Source(dict(sd), desc, config, dropped, mae)


def source_model_defaults(source: Source | None, linear_probe: bool = False) -> dict[str, Any]:
    """The ``model`` entries (name, kwargs, imports) of an etrain source run, as defaults for the fine-tuned model,
    so that ``etrain finetune --from RUN`` rebuilds the source's architecture; {} for other sources. An ``etrain
    mae`` source fine-tunes with ``global_pool: avg`` (MAE's default) unless its kwargs or ``linear_probe`` say
    otherwise."""
    if source is None or not source.config:
        return {}
    model = {k: source.config["model"][k] for k in ("name", "kwargs", "imports") if k in source.config["model"]}
    if source.mae and not linear_probe:
        model["kwargs"] = {"global_pool": "avg", **(model.get("kwargs") or {})}
        return {"model": model, "finetune": {"head_std": MAE_HEAD_STD}}
    return {"model": model}


def classifier_names(model: nn.Module) -> list[str]:
    """Module names of the model's classifier(s): timm's ``pretrained_cfg["classifier"]``, else the module that
    ``get_classifier()`` returns."""
    cls = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    names = [cls] if isinstance(cls, str) else list(cls or [])
    names = [n for n in names if _has_module(model, n)]
    if not names and callable(getattr(model, "get_classifier", None)):
        clf = model.get_classifier()
        names = [n for n, m in model.named_modules() if m is clf and n]
    if not names:
        raise TrainError(f"cannot tell which part of {type(model).__name__} is the classifier (no timm "
                         "pretrained_cfg['classifier'] and no get_classifier()); name it with finetune.reinit")
    return names


def _has_module(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False


def _under(key: str, prefixes: list[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _resample_pos_embed(model: nn.Module, value: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """A ViT position embedding of another patch grid brought to the model's grid (None if not possible)."""
    pe = getattr(model, "patch_embed", None)
    if pe is None or value.dim() != 3 or value.shape[-1] != target.shape[-1]:
        return None
    prefix = 0 if getattr(model, "no_embed_class", False) else int(getattr(model, "num_prefix_tokens", 0))
    old = value.shape[1] - prefix
    side = int(round(old ** 0.5))
    if side * side != old:
        return None
    return resample_abs_pos_embed(value, new_size=list(pe.grid_size), old_size=[side, side],
                                  num_prefix_tokens=prefix)


def _pooled_norm(target: Mapping[str, torch.Tensor], source: Source) -> tuple[list[str], list[str]]:
    """MAE's fine-tuning layout (``--global_pool``): a model whose tokens are average-pooled into ``fc_norm`` (its
    ``norm`` an Identity) from an MAE encoder that has ``norm`` and no ``fc_norm``. Returns the model's fresh
    ``fc_norm`` keys and the source's unused ``norm`` keys; ([], []) for any other pair."""
    fc = sorted(k for k in target if k.startswith("fc_norm."))
    norm = sorted(k for k in source.state_dict if k.startswith("norm."))
    if (not source.mae or not fc or not norm or any(k.startswith("norm.") for k in target)
            or any(k.startswith("fc_norm.") for k in source.state_dict)):
        return [], []
    return fc, norm


def init_classifier(model: nn.Module, std: float) -> None:
    """The classifier's linear weights ~ trunc_normal(std), biases 0 (``finetune.head_std``; MAE: 2e-5)."""
    linears = [m for n in classifier_names(model) for m in model.get_submodule(n).modules()
               if isinstance(m, nn.Linear)]
    if not linears:
        raise TrainError(f"finetune.head_std needs a linear classifier; {type(model).__name__}'s "
                         f"{', '.join(classifier_names(model))} has none")
    with torch.no_grad():
        for m in linears:
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                m.bias.zero_()


def load_backbone(model: nn.Module, source: Source, reinit: list[str] = ()) -> LoadReport:
    """Load ``source`` into ``model`` strictly, apart from the classifier, ``reinit`` patterns and MAE's pooled
    norm (module docstring); raises :class:`CheckpointError` listing every missing, unexpected or mis-shaped key."""
    heads = classifier_names(model)
    target = model.state_dict()
    pooled, unused_norm = _pooled_norm(target, source)
    mae_layout = set(pooled) | set(unused_norm)  # the model's fresh fc_norm, the source's unused norm

    def fresh(k: str) -> bool:
        return _under(k, heads) or k in mae_layout or any(fnmatch.fnmatchcase(k, p) for p in reinit)

    src = {k: v for k, v in source.state_dict.items() if not fresh(k)}
    want = {k for k in target if not fresh(k)}
    missing, unexpected = sorted(want - set(src)), sorted(set(src) - want)
    resampled, bad_shapes = [], []
    for k in sorted(want & set(src)):
        v = src[k]
        if v.shape != target[k].shape:
            r = _resample_pos_embed(model, v, target[k]) if k.endswith("pos_embed") else None
            if r is None:
                bad_shapes.append(f"{k}: {tuple(v.shape)} in the source, {tuple(target[k].shape)} in the model")
            else:
                src[k] = r
                resampled.append(f"{k} {tuple(v.shape)} -> {tuple(r.shape)}")
    if missing or unexpected or bad_shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing from the source ({_short(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected in the source ({_short(unexpected)})")
        if bad_shapes:
            parts.append(f"{len(bad_shapes)} of another shape ({_short(bad_shapes, 3)})")
        raise CheckpointError(
            f"{source.description} does not fit {type(model).__name__} (classifier {', '.join(heads)} aside): "
            + "; ".join(parts) + ". Is it another architecture? Fine-tune the source's model (leave --model out "
            "for an etrain run), or list keys meant to start fresh in finetune.reinit")
    state = dict(target)
    state.update({k: v.to(dtype=target[k].dtype) for k, v in src.items()})
    model.load_state_dict(state, strict=True)
    return LoadReport(loaded=sorted(src), head=sorted(k for k in target if _under(k, heads)),
                      reinit=sorted(k for k in target if fresh(k) and not _under(k, heads) and k not in mae_layout),
                      dropped=source.dropped + sorted(k for k in source.state_dict if fresh(k)),
                      resampled=resampled, source=source.description, pooled_norm=pooled)


class LinearProbe(nn.Module):
    """A frozen timm backbone (kept in eval mode: no BatchNorm statistics move, no dropout) and a new trainable
    classifier on its pre-logits features, behind an affine-free BatchNorm when ``bn`` (MAE's linear probing).
    Size attributes (``patch_embed``, ``set_input_size``, ...) are the backbone's, so curricula still apply."""

    _DELEGATED = ("set_input_size", "patch_embed", "feature_info", "input_size_rule", "pretrained_cfg")

    def __init__(self, backbone: nn.Module, num_classes: int, bn: bool = True):
        super().__init__()
        for name in ("reset_classifier", "forward_features", "forward_head"):
            if not callable(getattr(backbone, name, None)):
                raise TrainError(f"a linear probe needs a timm model ({type(backbone).__name__} has no {name}())")
        backbone.reset_classifier(0)
        backbone.requires_grad_(False)
        self.backbone = backbone.eval()
        width = int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)
        linear = nn.Linear(width, num_classes)
        nn.init.trunc_normal_(linear.weight, std=0.01)  # MAE's linear-probe head initialisation
        nn.init.zeros_(linear.bias)
        self.head = nn.Sequential(nn.BatchNorm1d(width, affine=False, eps=1e-6), linear) if bn else linear

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in LinearProbe._DELEGATED:
                return getattr(self._modules["backbone"], name)
            raise

    def train(self, mode: bool = True) -> "LinearProbe":
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)
        return self.head(features)


def run_finetune(cfg: Config, run_dir: str | None = None, resume: str | None = None,
                 overwrite: bool = False, source: Source | None = None) -> dict:
    """Fine-tune (or linear-probe) ``cfg.model`` from ``cfg.finetune.source`` to the end; writes ``init.json``
    (what was loaded) next to the usual run files. ``source``: that source already loaded (``load_source(
    cfg.finetune.source, cfg.finetune.weights)``), so a caller that read it for its defaults does not read it
    twice."""
    f = cfg.finetune
    if not resume and not f.source:
        raise TrainError("etrain finetune needs --from RUN_DIR_OR_CHECKPOINT (or --resume RUN_DIR)")
    if resume:
        source = None  # a resumed run has its own weights
    elif source is None:
        source = load_source(f.source, f.weights)
    reports: list[LoadReport] = []

    def factory(num_classes: int) -> nn.Module:
        model = create_model(cfg, num_classes)
        final = cfg.data.final_size
        if can_resize(model) and current_input_size(model) != final:
            # a ViT built for its default 224 first moves to the final grid, so a source trained at the final size
            # loads its position embedding exactly instead of through a resampling and back
            model.set_input_size(img_size=(final, final))
        if source is not None:
            reports.append(load_backbone(model, source, f.reinit))
            if f.head_std is not None and not f.linear_probe:
                init_classifier(model, f.head_std)
        if f.linear_probe:
            model = LinearProbe(model, num_classes, bn=f.probe_bn)
        return model

    trainer = Trainer(cfg, run_dir=run_dir, resume=resume, overwrite=overwrite, model_factory=factory)
    try:
        if reports and trainer.info.main:
            print(reports[0].summary(), flush=True)
            write_text_atomic(os.path.join(trainer.run_dir, "init.json"), json.dumps(reports[0].to_dict(), indent=1))
        return trainer.fit()
    finally:
        trainer.comm.close()
