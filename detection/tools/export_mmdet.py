#!/usr/bin/env python
"""Export the backbone of an ``etrain train`` checkpoint for MMDetection.

    python detection/tools/export_mmdet.py runs/my-run [--ema|--model] -o work/backbone.pth

Writes ``{"state_dict": {"body.<key>": tensor}, "meta": {...}}`` with plain tensors and strings only, so
``torch.load(weights_only=True)`` (torch >= 2.6 default, used by mmengine's loader on torch 2.14) reads it.
Keys are those of ``TimmBackbone`` (all feature levels), so both ``TimmBackbone(checkpoint=...)`` and
``init_cfg=dict(type='Pretrained', checkpoint=...)`` load it; mmdet itself is not needed to export.
"""

from __future__ import annotations

import argparse
import os
import sys

import timm
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from etrain_mmdet.weights import BODY, EXPORT_FORMAT, WeightsError, load_into_features, load_source  # noqa: E402


def export(src: str, out: str, weights: str = "auto", model_name: str | None = None,
           model_kwargs: dict | None = None) -> dict:
    _, info = load_source(src, weights)
    name = model_name or info.get("model_name")
    if not name:
        raise WeightsError(f"{src} does not name its architecture; pass --model-name")
    if not timm.is_model(name):
        raise WeightsError(f"unknown timm model {name!r}")
    kwargs = {**(info.get("model_kwargs") or {}), **(model_kwargs or {})}
    kwargs.pop("num_classes", None)
    body = timm.create_model(name, pretrained=False, features_only=True, **kwargs)
    info = load_into_features(body, src, which=weights, model_name=name)
    sd = {BODY + k: v.detach().clone().contiguous() for k, v in body.state_dict().items()}
    meta = {"format": EXPORT_FORMAT, "model_name": name, "model_kwargs": kwargs, "weights": info.get("weights"),
            "source": os.path.abspath(info["path"]), "timm_version": timm.__version__}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    torch.save({"state_dict": sd, "meta": meta}, out)
    return meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="etrain run directory or checkpoint file (or a timm state dict with --model-name)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ema", action="store_const", const="ema", dest="weights", help="export the EMA weights")
    g.add_argument("--model", action="store_const", const="model", dest="weights", help="export the raw weights")
    p.add_argument("--model-name", help="timm model name (default: from the etrain checkpoint)")
    p.add_argument("-o", "--out", required=True, help="output .pth")
    a = p.parse_args(argv)
    try:
        meta = export(a.src, a.out, a.weights or "auto", a.model_name)
    except WeightsError as e:
        print(f"export_mmdet: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.out}: {meta['model_name']} [{meta['weights']}] from {meta['source']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
