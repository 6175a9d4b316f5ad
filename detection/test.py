#!/usr/bin/env python
"""Evaluate a trained detector checkpoint (thin wrapper over mmengine's Runner.test).

    python detection/test.py CONFIG work/retina-r50/epoch_12.pth --data-root /data/coco
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

# detector checkpoints written by mmengine hold message-hub/numpy state that torch 2.14's weights_only loader
# rejects; they are your own training outputs, so the full loader is used for them.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="test a detector checkpoint (mmengine Runner)")
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--work-dir")
    p.add_argument("--data-root")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    args = p.parse_args(argv)

    from mmdet.utils import register_all_modules
    from mmengine.runner import Runner

    import etrain_mmdet  # noqa: F401
    from etrain_mmdet.config_utils import load_config

    register_all_modules(init_default_scope=True)
    cfg = load_config(args.config, args.cfg_options, args.data_root, args.work_dir)
    cfg.model.backbone.checkpoint = None  # the detector checkpoint carries the backbone
    cfg.model.backbone.pop("init_cfg", None)
    cfg.launcher = args.launcher
    cfg.load_from = args.checkpoint
    metrics = Runner.from_cfg(cfg).test()
    print(metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
