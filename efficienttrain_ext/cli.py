"""``etrain`` command line: ``train``, ``schedule``, ``search`` and ``plot``."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["main", "build_parser"]

# convenience flags of `train` and `schedule`: flag -> dotted config key
_FLAGS = {
    "model": "model.name",
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
    p.add_argument("--model", help="timm model name (random init unless --pretrained-file)")
    p.add_argument("--curriculum", help="efficienttrain | efficienttrain++ | progressive | none | FILE.yaml")
    p.add_argument("--epochs", type=int, help="training length (efficienttrain++: budget in final-size epochs)")
    p.add_argument("--final-size", type=int, help="final input size (the size evaluated at)")
    if training:
        p.add_argument("--batch-size", type=int, help="batch size per process")
        p.add_argument("--dataset", choices=["fashion_mnist", "imagefolder"])
        p.add_argument("--data-root", help="Fashion-MNIST IDX directory or ImageFolder root with train/ and val/")
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
    return parser


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _config(args: argparse.Namespace):
    from .config import apply_overrides, config_from_dict, load_config

    if getattr(args, "resume", None) and not args.config:
        from .checkpoint import load

        cfg = config_from_dict(load(args.resume)["config"])  # continue with the run's own configuration
        cfg.train.debug_kill_at_step = None  # the test hook that interrupted it must not fire again
    else:
        cfg = load_config(args.config)
    flags = [f"{key}={_yaml_value(getattr(args, flag))}" for flag, key in _FLAGS.items()
             if getattr(args, flag, None) is not None]
    return apply_overrides(cfg, flags + list(args.overrides))


def _yaml_value(v) -> str:
    import yaml

    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import run

    cfg = _config(args)
    run(cfg, resume=args.resume, overwrite=args.overwrite)
    return 0


def _cmd_schedule(args: argparse.Namespace) -> int:
    from .curriculum import schedule_table
    from .flops import flops_by_size
    from .train import create_model, make_schedule

    cfg = _config(args)
    model = create_model(cfg, args.num_classes)
    schedule = make_schedule(cfg, model)
    flops = flops_by_size(model, [s.size for s in schedule.stages] + [cfg.data.final_size])
    print(f"model {cfg.model.name}")
    print(schedule_table(schedule, flops))
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from .search import check_search_args, run_search
    from .train import TrainError

    if args.curriculum is not None:  # the search writes its own schedule per trial
        raise TrainError("etrain search builds its own schedules; --curriculum does not apply (replay and "
                         "batch_scale go in --set 'curriculum.options={...}')")
    cfg = _config(args)
    try:
        check_search_args(args.candidates, args.stages, cfg.data.final_size, args.tolerance)
    except ValueError as e:
        raise TrainError(str(e)) from e
    run_search(cfg, args.candidates, args.stages, args.tolerance, args.metric)
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from .plot import compare_table, plot_runs

    for path in plot_runs(args.runs, args.out):
        print(f"wrote {path}")
    print(compare_table(args.runs))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .curriculum import ScheduleError
    from .data import DataError

    args = build_parser().parse_args(argv)
    handlers = {"train": _cmd_train, "schedule": _cmd_schedule, "search": _cmd_search, "plot": _cmd_plot}
    try:
        return handlers[args.command](args)
    except (ConfigError, ScheduleError, DataError, CheckpointError, FileNotFoundError) as e:
        print(f"etrain {args.command}: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        from .train import TrainError

        if isinstance(e, TrainError):
            print(f"etrain {args.command}: error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
