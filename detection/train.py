#!/usr/bin/env python
"""Train an MMDetection config with the efficienttrain_ext glue registered (thin wrapper over mmengine's Runner).

    python detection/train.py detection/configs/retinanet_timm-r50_fpn_1x_coco.py \
        --data-root /data/coco --backbone-weights runs/r50-efficienttrain --ema --work-dir work/retina-r50

Distributed: ``torchrun --nproc_per_node 8 detection/train.py CONFIG --launcher pytorch``.
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # mmengine checkpoints (resume) hold non-tensor state; your own files
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # makes `etrain_mmdet` importable (custom_imports)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="train a detector (mmengine Runner)")
    p.add_argument("config")
    p.add_argument("--work-dir", help="default: work_dirs/<config name>")
    p.add_argument("--data-root", help="COCO-format root replacing the config's data_root everywhere")
    p.add_argument("--backbone-weights", help="etrain run dir / checkpoint, export_mmdet.py file or timm state dict")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ema", action="store_const", const="ema", dest="weights", help="use the EMA weights")
    g.add_argument("--model-weights", action="store_const", const="model", dest="weights",
                   help="use the raw (non-EMA) weights")
    p.add_argument("--resume", nargs="?", const="auto", help="resume (from the latest checkpoint or a file)")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE", help="mmengine config overrides")
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    p.add_argument("--local-rank", "--local_rank", type=int, default=0)
    return p.parse_args(argv)


def build_cfg(args):
    import etrain_mmdet  # noqa: F401  registers TimmBackbone
    from etrain_mmdet.config_utils import load_config, set_backbone_weights

    cfg = load_config(args.config, args.cfg_options, args.data_root, args.work_dir)
    if args.backbone_weights:
        set_backbone_weights(cfg, args.backbone_weights, args.weights or "auto")
    elif args.weights:
        cfg.model.backbone.weights = args.weights
    cfg.launcher = args.launcher
    if args.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    from mmdet.utils import register_all_modules
    from mmengine.runner import Runner

    register_all_modules(init_default_scope=True)
    from etrain_mmdet import WeightsError

    cfg = build_cfg(args)
    try:
        runner = Runner.from_cfg(cfg)
    except WeightsError as e:
        print(f"detection/train.py: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    runner.train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
