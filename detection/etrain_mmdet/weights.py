"""Weight loading for timm feature extractors, independent of mmdet/mmengine (needs only torch + timm).

Sources understood by :func:`load_source`:

* an ``etrain train`` checkpoint (``last.pt``/``best.pt`` file or a run directory): ``model`` or ``ema`` weights;
* a file written by ``detection/tools/export_mmdet.py`` (``{"state_dict": ..., "meta": {...}}``, backbone keys);
* a plain timm state dict (``.pth``/``.pt``/``.bin``; ``.safetensors`` if the package is installed), optionally
  nested under ``state_dict``/``model``/``state_dict_ema``.

The keys of a classification model (``stages.0.blocks...``) are mapped onto the keys of timm's
``features_only`` wrapper (``stages_0.blocks...``, ``model.stages...``) and every tensor of the feature extractor
must be found with the right shape, so a checkpoint of another architecture fails with a message naming both.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch

__all__ = ["WeightsError", "load_source", "map_to_features", "load_into_features", "EXPORT_FORMAT"]

EXPORT_FORMAT = "etrain-mmdet-backbone-v1"
BODY = "body."  # attribute of TimmBackbone holding the timm feature extractor
ETRAIN_FORMAT = "etrain-checkpoint-v1"  # efficienttrain_ext.checkpoint.FORMAT (not imported: keep this standalone)


class WeightsError(RuntimeError):
    """Weights that cannot be used for the requested backbone (missing, unreadable, other architecture)."""


def _torch_load(path: str) -> Any:
    try:  # everything we write is plain tensors/values: the safe loader is enough
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"cannot read weights file {path}: {e}") from e


def load_source(path: str | os.PathLike, which: str = "auto") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read weights from ``path``; return (state dict, info). ``which``: ``auto`` | ``model`` | ``ema``.

    info has ``kind`` (``etrain`` | ``export`` | ``state_dict``), ``model_name`` and ``model_kwargs`` when known,
    and ``weights`` (which tensors were taken).
    """
    if which not in ("auto", "model", "ema"):
        raise WeightsError(f"weights must be 'auto', 'model' or 'ema', got {which!r}")
    path = os.fspath(path)
    if os.path.isdir(path):
        cand = os.path.join(path, "last.pt")
        if not os.path.isfile(cand):
            raise WeightsError(f"{path} is a directory without last.pt (not an etrain run directory)")
        path = cand
    if not os.path.isfile(path):
        raise WeightsError(f"weights file {path} not found")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError as e:  # pragma: no cover
            raise WeightsError(f"{path}: reading .safetensors needs the safetensors package") from e
        return dict(load_file(path)), {"kind": "state_dict", "weights": "model", "path": path}
    obj = _torch_load(path)
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict or checkpoint")
    info: dict[str, Any] = {"path": path}
    if obj.get("format") == ETRAIN_FORMAT:
        mcfg = (obj.get("config") or {}).get("model") or {}
        info.update(kind="etrain", model_name=mcfg.get("name"), model_kwargs=dict(mcfg.get("kwargs") or {}))
        has_ema = obj.get("ema") is not None
        if which == "ema" and not has_ema:
            raise WeightsError(f"etrain checkpoint {path} has no EMA weights (trained with train.ema off); "
                               "use weights='model'")
        take = "ema" if which == "ema" or (which == "auto" and has_ema) else "model"
        info["weights"] = take
        sd = obj[take]
    elif isinstance(obj.get("meta"), Mapping) and obj["meta"].get("format") == EXPORT_FORMAT:
        meta = obj["meta"]
        info.update(kind="export", model_name=meta.get("model_name"), model_kwargs=dict(meta.get("model_kwargs") or {}),
                    weights=meta.get("weights"))
        sd = obj["state_dict"]
    else:
        sd = obj
        for key in (("state_dict_ema", "model_ema") if which == "ema" else ()) + ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                sd = obj[key]
                break
        info.update(kind="state_dict", weights=which if which != "auto" else "model")
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise WeightsError(f"{path} contains no tensors")
    # strip wrappers: DDP, torch.compile, mmdet detector prefix
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd, info


def _candidates(key: str) -> list[str]:
    """Names a features_only key may have had in the classification model."""
    out = [key]
    if key.startswith("model."):  # FeatureGetterNet keeps the whole model as .model
        out.append(key[len("model."):])
    head, dot, rest = key.partition(".")
    # FeatureListNet(flatten_sequential=True) renames child "stages.0" to "stages_0"
    for i, ch in enumerate(head):
        if ch == "_":
            out.append(head[:i] + "." + head[i + 1:] + dot + rest)
    return out


def map_to_features(features: torch.nn.Module, source: Mapping[str, torch.Tensor], *, prefix: str | None = None,
                    model_name: str = "", source_desc: str = "", source_arch: str | None = None
                    ) -> dict[str, torch.Tensor]:
    """Return a state dict for ``features`` built from ``source``; raise WeightsError if anything is missing."""
    if prefix:
        sub = {k[len(prefix):]: v for k, v in source.items() if k.startswith(prefix)}
        if not sub:
            raise WeightsError(f"{source_desc}: no keys start with prefix {prefix!r}")
        source = sub
    target = features.state_dict()
    out: dict[str, torch.Tensor] = {}
    missing, bad_shape = [], []
    for key, ref in target.items():
        for cand in _candidates(key):
            if cand in source:
                if source[cand].shape != ref.shape:
                    bad_shape.append(f"{cand}: {tuple(source[cand].shape)} vs {tuple(ref.shape)}")
                else:
                    out[key] = source[cand]
                break
        else:
            missing.append(key)
    if missing or bad_shape:
        arch = f" (trained as {source_arch!r})" if source_arch else ""
        detail = []
        if missing:
            detail.append(f"{len(missing)} tensors missing, e.g. {', '.join(missing[:4])}")
        if bad_shape:
            detail.append(f"{len(bad_shape)} shape mismatches, e.g. {'; '.join(bad_shape[:3])}")
        raise WeightsError(f"{source_desc}{arch} does not fit timm model {model_name!r}: " + "; ".join(detail)
                           + ". Use the checkpoint's architecture (and model_kwargs) in the backbone config.")
    return out


def load_into_features(features: torch.nn.Module, path: str, *, which: str = "auto", prefix: str | None = None,
                       model_name: str = "") -> dict[str, Any]:
    sd, info = load_source(path, which)
    if prefix is None and info["kind"] == "state_dict" and any(k.startswith("backbone.") for k in sd):
        prefix = "backbone."  # a whole-detector checkpoint
    if prefix:
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if not sd:
            raise WeightsError(f"{path}: no keys start with prefix {prefix!r}")
    if all(k.startswith(BODY) for k in sd):  # TimmBackbone keys (export files, detector checkpoints)
        sd = {k[len(BODY):]: v for k, v in sd.items()}
    desc = f"{info['kind']} weights {path}" + (f" [{info.get('weights')}]" if info.get("weights") else "")
    mapped = map_to_features(features, sd, model_name=model_name, source_desc=desc,
                             source_arch=info.get("model_name"))
    features.load_state_dict(mapped, strict=True)
    info["loaded"] = len(mapped)
    return info
