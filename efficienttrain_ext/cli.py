"""``etrain`` command line: ``train``, ``schedule``, ``search``, ``plot``, ``compare`` and ``analyze``.

Every user-facing error (an :class:`~efficienttrain_ext.errors.EtrainError`) is printed as one line and ends the
command with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import yaml

from .analysis.runner import run_analyze
from .config import Config, apply_overrides, config_from_dict, load_config
from .curriculum.flops import flops_by_size
from .curriculum.tables import schedule_table
from .engine import checkpoint as ckpt_io
from .engine.compare import run_compare
from .engine.model_factory import create_model
from .engine.plots import compare_table, plot_runs
from .engine.search_runner import run_search
from .engine.trainer import make_schedule, run
from .errors import EtrainError, SearchError
from .curriculum.search import check_search_args

__all__ = ["main", "build_parser"]

# convenience flags of `train` and `schedule`: flag -> dotted config key
_FLAGS = {
    "model": "model.name",
    "imports": "model.imports",
    "curriculum": "curriculum.name",
    "epochs": "train.epochs",
    "final_size": "data.final_size",
    "batch_size": "train.batch_size",
    "dataset": "data.dataset",
    "data_root": "data.root",
    "workers": "data.workers",
    "output": "train.output",
    "name": "train.name",
    "device": "train.device",
    "seed": "train.seed",
    "lr": "optim.lr",
    "amp": "train.amp",
    "pretrained_file": "model.pretrained_file",
}


def _add_config_args(p: argparse.ArgumentParser, training: bool, resumable: bool = True) -> None:
    p.add_argument("-c", "--config", help="YAML preset (see configs/); CLI flags and --set override it")
    p.add_argument("--model", help="timm model name, or package.module:factory for your own model (a callable "
                   "taking num_classes); random init unless --pretrained-file")
    p.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                   help="import MODULE first (e.g. one that registers timm models); repeatable")
    p.add_argument("--curriculum", help="efficienttrain | efficienttrain++ | progressive | none | FILE.yaml")
    p.add_argument("--epochs", type=int, help="training length (efficienttrain++: budget in final-size epochs)")
    p.add_argument("--final-size", type=int, help="final input size (the size evaluated at)")
    if training:
        p.add_argument("--batch-size", type=int, help="batch size per process")
        p.add_argument("--dataset", choices=["auto", "fashion_mnist", "imagefolder"],
                       help="default auto: from --data-root (train/ class folders, or the Fashion-MNIST IDX files)")
        p.add_argument("--data-root", help="ImageFolder root with train/ and val/ (or data.val_split), or a "
                       "Fashion-MNIST IDX directory")
        p.add_argument("--workers", type=int, help="data loader worker processes")
        p.add_argument("--output", help="parent directory of run directories (default runs/)")
        p.add_argument("--name", help="run directory name")
        p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
        p.add_argument("--seed", type=int)
        p.add_argument("--lr", type=float, help="absolute learning rate (default: 4e-3 x global batch / 4096)")
        p.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"])
        p.add_argument("--pretrained-file", help="local weights file to initialise from")
    if training and resumable:
        p.add_argument("--resume", help="run directory or checkpoint file to continue exactly (without -c, the "
                       "run's own configuration is used)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing run in the run directory")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config entry (YAML value), e.g. --set optim.weight_decay=0.1; repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etrain", description="EfficientTrain curricula for timm models")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a timm model with a curriculum")
    _add_config_args(p, training=True)
    p = sub.add_parser("schedule", help="print a curriculum's stage table and predicted compute (FLOP counted)")
    _add_config_args(p, training=False)
    p.add_argument("--num-classes", type=int, default=1000, help="classifier size of the model counted")
    p = sub.add_parser("search", help="greedy search for per-stage sizes with short proxy runs (EfficientTrain's "
                       "searched curricula); writes best_schedule.yaml for --curriculum")
    _add_config_args(p, training=True, resumable=False)
    p.add_argument("--candidates", required=True, type=_int_list, metavar="B1,B2,...",
                   help="candidate sizes below the final size, e.g. 96,128,160,192")
    p.add_argument("--stages", type=int, default=4, help="equal stages of the run (default 4)")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="accuracy points a stage may cost vs the all-final-size baseline (default 0)")
    p.add_argument("--metric", default="top1", choices=["top1", "ema_top1", "top5"])
    p = sub.add_parser("plot", help="plot accuracy vs wall time and the schedules of one or more runs")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("-o", "--out", help="output directory for the PNGs (default: the first run directory)")
    p = sub.add_parser("compare", help="train one configuration with several curricula x seeds; mean +- std table "
                       "(CSV, Markdown) and accuracy-vs-time plot (docs/results.md)")
    p.add_argument("-c", "--config", help="YAML preset (see configs/); --set overrides it")
    p.add_argument("--curricula", required=True, action="append", type=_str_list, metavar="SPEC,SPEC,...",
                   help="curriculum specs NAME[@KEY=VALUE...]: efficienttrain, none, FILE.yaml, "
                   "efficienttrain@resize=bilinear, none@cost=efficienttrain (equal predicted compute), ...")
    p.add_argument("--seeds", type=_int_list, default=[0], metavar="S1,S2,...", help="train.seed values (default 0)")
    p.add_argument("--output", required=True, help="comparison directory (one subdirectory per curriculum and seed)")
    p.add_argument("--overwrite", action="store_true", help="retrain runs that exist (default: finished runs are "
                   "read, interrupted ones resumed)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config entry for every run; repeatable")
    p = sub.add_parser("analyze", help="accuracy of checkpoints on low-/high-pass filtered validation images and "
                       "linear CKA between two models' layers (docs/analysis.md)")
    p.add_argument("checkpoints", nargs="+", help="etrain checkpoints or run directories (their last.pt), or plain "
                   "timm state-dict files (.pth/.safetensors: give the model with -c / --set model.name=...)")
    p.add_argument("-c", "--config", help="configuration of the evaluation data (default: the first checkpoint's)")
    p.add_argument("--lowpass", type=_int_list, default=[], metavar="R1,R2,...", help="low-pass radii")
    p.add_argument("--highpass", type=_int_list, default=[], metavar="R1,R2,...", help="high-pass radii")
    p.add_argument("--cka", action="store_true", help="linear CKA between the first two checkpoints' layers")
    p.add_argument("--cka-images", type=int, default=512, help="validation images for CKA (default 512)")
    p.add_argument("--cka-layers", type=_str_list, metavar="NAME,...", help="module names (default: the model's "
                   "feature stages and its output)")
    p.add_argument("--weights", choices=["model", "ema"], default="model", help="which weights of an etrain "
                   "checkpoint (default: the trained model)")
    p.add_argument("--labels", type=_str_list, metavar="NAME,...", help="one name per checkpoint")
    p.add_argument("--batch-size", type=int, help="evaluation batch (default train.batch_size)")
    p.add_argument("--output", required=True, help="directory for the tables and plots")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config entry (the data, e.g. data.val_subset=1000); repeatable")
    return parser


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _str_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _config(args: argparse.Namespace) -> Config:
    if getattr(args, "resume", None) and not args.config:
        cfg = config_from_dict(ckpt_io.load(args.resume)["config"])  # continue with the run's own configuration
    else:
        cfg = load_config(args.config)
    flags = [f"{key}={_yaml_value(getattr(args, flag))}" for flag, key in _FLAGS.items()
             if getattr(args, flag, None) is not None]
    return apply_overrides(cfg, flags + list(args.overrides))


def _yaml_value(v) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def _cmd_train(args: argparse.Namespace) -> int:
    run(_config(args), resume=args.resume, overwrite=args.overwrite)
    return 0


def _cmd_schedule(args: argparse.Namespace) -> int:
    cfg = _config(args)
    model = create_model(cfg, args.num_classes)
    schedule = make_schedule(cfg, model)
    flops = flops_by_size(model, [s.size for s in schedule.stages] + [cfg.data.final_size])
    print(f"model {cfg.model.name}")
    print(schedule_table(schedule, flops))
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    if args.curriculum is not None:  # the search writes its own schedule per trial
        raise SearchError("etrain search builds its own schedules; --curriculum does not apply (replay and "
                          "batch_scale go in --set curriculum.replay=... / curriculum.batch_scale=...)")
    cfg = _config(args)
    check_search_args(args.candidates, args.stages, cfg.data.final_size, args.tolerance)
    run_search(cfg, args.candidates, args.stages, args.tolerance, args.metric)
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    for path in plot_runs(args.runs, args.out):
        print(f"wrote {path}")
    print(compare_table(args.runs))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    run_compare(_config(args), [s for group in args.curricula for s in group], args.seeds, args.output,
                overwrite=args.overwrite)
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    run_analyze(args.checkpoints, args.output, config=args.config, overrides=args.overrides, lowpass=args.lowpass,
                highpass=args.highpass, cka=args.cka, cka_images=args.cka_images, cka_layers=args.cka_layers,
                weights=args.weights, labels=args.labels, batch_size=args.batch_size)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"train": _cmd_train, "schedule": _cmd_schedule, "search": _cmd_search, "plot": _cmd_plot,
                "compare": _cmd_compare, "analyze": _cmd_analyze}
    try:
        return handlers[args.command](args)
    except EtrainError as e:
        print(f"etrain {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
