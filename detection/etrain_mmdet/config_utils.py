"""Config helpers shared by detection/train.py and detection/test.py (mmengine Config objects)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["load_config", "set_data_root", "set_backbone_weights"]


def _walk(node: Any, fn) -> None:
    if isinstance(node, dict):
        fn(node)
        for v in node.values():
            _walk(v, fn)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _walk(v, fn)


def load_config(path: str, cfg_options: list[str] | None = None, data_root: str | None = None,
                work_dir: str | None = None):
    """Config.fromfile + ``--cfg-options KEY=VALUE ...`` + ``--data-root``; work_dir defaults to work_dirs/<name>."""
    import argparse

    from mmengine.config import Config, DictAction

    cfg = Config.fromfile(path)
    if cfg_options:
        ns = argparse.Namespace()
        DictAction(option_strings=[], dest="x")(None, ns, cfg_options)
        cfg.merge_from_dict(ns.x)
    if data_root:
        set_data_root(cfg, data_root)
    cfg.work_dir = work_dir or cfg.get("work_dir") or os.path.join(
        "work_dirs", os.path.splitext(os.path.basename(path))[0])
    return cfg


def set_data_root(cfg, root: str) -> None:
    """Point every dataset (also inside RepeatDataset wrappers) and every COCO evaluator at ``root``."""
    root = os.path.join(root, "")
    old = os.path.join(cfg.get("data_root", "data/coco/"), "")

    def fix(d: dict) -> None:
        if "data_root" in d:
            d["data_root"] = root
        if d.get("type") == "CocoMetric" and isinstance(d.get("ann_file"), str) and d["ann_file"].startswith(old):
            d["ann_file"] = root + d["ann_file"][len(old):]

    cfg.data_root = root
    for key in ("train_dataloader", "val_dataloader", "test_dataloader", "val_evaluator", "test_evaluator"):
        if cfg.get(key) is not None:
            _walk(cfg[key], fix)


def set_backbone_weights(cfg, path: str, weights: str = "auto") -> None:
    bb = cfg.model.backbone
    if bb.get("type") != "TimmBackbone":
        raise ValueError(f"--backbone-weights needs a TimmBackbone config, this one has {bb.get('type')!r}")
    bb.checkpoint = path
    bb.weights = weights
