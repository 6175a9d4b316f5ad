"""``etrain`` command line: ``train``, ``mae``, ``finetune``, ``schedule``, ``search``, ``plot``, ``shards``,
``compare`` and ``analyze``.

Every user-facing error (an :class:`~efficienttrain_ext.errors.EtrainError`) is printed as one line and ends the
command with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import yaml

from .analysis.runner import run_analyze
from .config import Config, apply_overrides, config_from_dict, load_config, merge_config_dicts
from .curriculum.flops import flops_by_size
from .curriculum.tables import schedule_table
from .data.build import DATASETS
from .data.shards import write_shards
from .engine import checkpoint as ckpt_io
from .engine.compare import run_compare
from .engine.finetune import (FINETUNE_DEFAULTS, LINEAR_PROBE_DEFAULTS, load_source, run_finetune,
                              source_model_defaults)
from .engine.mae import MAE_DEFAULTS, run_mae
from .engine.model_factory import create_model
from .engine.plots import compare_table, plot_runs
from .engine.search_runner import run_search
from .engine.trainer import make_schedule, run
from .errors import ConfigError, EtrainError, SearchError
from .presets import PRESETS, paper_preset

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


def _add_config_args(p: argparse.ArgumentParser, training: bool, resumable: bool = True,
                     presets: bool = False) -> None:
    p.add_argument("-c", "--config", help="YAML preset (see configs/); CLI flags and --set override it")
    if presets:
        p.add_argument("--preset", choices=PRESETS, help="paper: the papers' recipe for --model (Table 14: drop path, "
                       "EMA, clipping, AMP per model), from configs/imagenet/; prints which file")
    p.add_argument("--model", help="timm model name, or package.module:factory for your own model (a callable "
                   "taking num_classes); random init unless --pretrained-file")
    p.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                   help="import MODULE first (e.g. one that registers timm models); repeatable")
    p.add_argument("--curriculum", help="efficienttrain | efficienttrain++ | progressive | none | FILE.yaml")
    p.add_argument("--epochs", type=int, help="training length (efficienttrain++: budget in final-size epochs)")
    p.add_argument("--final-size", type=int, help="final input size (the size evaluated at)")
    if training:
        p.add_argument("--batch-size", type=int, help="batch size per process")
        p.add_argument("--dataset", choices=list(DATASETS),
                       help="default auto: from --data-root (train/ class folders, or the Fashion-MNIST IDX files); "
                       "wds: tar shards (--set data.shards=PATTERN); cifar10: --data-root is the JPEG archive "
                       "(train/, test/), its folder, or the python pickle directory cifar-10-batches-py (--set "
                       "data.download=true downloads it where the machine is online)")
        p.add_argument("--data-root", help="ImageFolder root with train/ and val/ (or test/, or data.val_split), "
                       "or a .tar/.tar.gz of one (unpacked once into $ETRAIN_CACHE), or a Fashion-MNIST IDX "
                       "directory")
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
    _add_config_args(p, training=True, presets=True)
    p = sub.add_parser("mae", help="masked-autoencoder pre-training of a timm ViT/DeiT with a curriculum (the "
                       "flags of train; MAE's recipe as defaults); writes encoder.pth and reconstruction.png")
    _add_config_args(p, training=True)
    p.add_argument("--mask-ratio", type=float, help="share of each image's patches masked, in (0, 1) (default 0.75)")
    p = sub.add_parser("finetune", help="fine-tune (or linear-probe) from an etrain train/mae run or checkpoint, or "
                       "a timm state dict, with a new classifier (the flags of train)")
    _add_config_args(p, training=True)
    p.add_argument("--from", dest="source", help="run directory, etrain checkpoint, or timm state-dict file; "
                   "an etrain run's model architecture is the default --model")
    p.add_argument("--weights", choices=["auto", "model", "ema"], help="which weights of an etrain checkpoint "
                   "(default auto: EMA when it has them)")
    p.add_argument("--linear-probe", action="store_true", default=None,
                   help="freeze the backbone, train a new classifier (MAE's linear-probe recipe as defaults)")
    p.add_argument("--layer-decay", type=float,
                   help="layer-wise learning-rate decay (default 0.65, MAE's ViT-B recipe; 1: none)")
    p = sub.add_parser("schedule", help="print a curriculum's stage table and predicted compute (FLOP counted)")
    _add_config_args(p, training=False, presets=True)
    p.add_argument("--num-classes", type=int, default=1000, help="classifier size of the model counted")
    p = sub.add_parser("search", help="search the per-stage sizes with short proxy runs: EfficientTrain's "
                       "Algorithm 1 (et), its forward variant, or EfficientTrain++'s computation-constrained search "
                       "(etpp); writes best_schedule.yaml for --curriculum (see docs/search.md)")
    _add_config_args(p, training=True, resumable=False)
    p.add_argument("--algorithm", choices=["et", "forward", "etpp"], default="et",
                   help="et (default): Algorithm 1, backward, smallest sizes at the baseline's accuracy; forward: "
                   "stage by stage from the first; etpp: most accurate sizes at a budget of --epochs final-size "
                   "epochs")
    p.add_argument("--candidates", required=True, type=_int_list, metavar="B1,B2,...",
                   help="candidate sizes below the final size, e.g. 96,128,160,192")
    p.add_argument("--stages", type=int, help="stages of the run (default 5 for et/forward, 10 for etpp)")
    p.add_argument("--tolerance", type=float,
                   help="et/forward: accuracy points the schedule may lose vs the all-final-size baseline "
                   "(default 0)")
    p.add_argument("--cost", choices=["pixels", "flops"],
                   help="etpp: a stage at size B runs (v/B)^2 x budget/N epochs (pixels, default) or the model's "
                   "train-FLOP ratio (flops)")
    p.add_argument("--seeds", type=_int_list, metavar="S1,S2,...",
                   help="train every size list with each seed and rank by the mean (default: --seed)")
    p.add_argument("--metric", default="top1", choices=["top1", "ema_top1", "top5"])
    p = sub.add_parser("plot", help="plot accuracy vs wall time and the schedules of one or more runs")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("-o", "--out", help="output directory for the PNGs (default: the first run directory)")
    p = sub.add_parser("shards", help="write an ImageFolder as webdataset tar shards (data.dataset: wds)")
    p.add_argument("image_folder", help="ImageFolder root with train/ (and val/) class folders, or one split")
    p.add_argument("out_dir", help="folder for <split>-NNNNNN.tar, their .idx indexes and classes.json")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the order samples are written in (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace shards already in OUT_DIR")
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
    p.add_argument("--report-only", action="store_true", help="train nothing: tabulate the runs that have "
                   "finished (e.g. of a grid still running in another process)")
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
    p.add_argument("--output", help="directory for the tables and plots (default: analysis/ beside the first "
                   "checkpoint: RUN/analysis for a run directory or RUN/last.pt)")
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


def _config(args: argparse.Namespace, base: dict | None = None, flags: dict[str, str] | None = None) -> Config:
    """The configuration of a command: defaults < ``base`` (the command's own defaults) < --config < flags < --set
    (a resumed run without --config: its own configuration < flags < --set)."""
    config = args.config
    if getattr(args, "preset", None):
        if config:
            raise ConfigError("give -c FILE or --preset, not both")
        config = paper_preset(args.model, curriculum=getattr(args, "curriculum", None))
        print(f"etrain {args.command}: --preset {args.preset} for {args.model}: {config}", flush=True)
    if getattr(args, "resume", None) and not config:
        cfg = config_from_dict(ckpt_io.load(args.resume)["config"])  # continue with the run's own configuration
    else:
        cfg = load_config(config, base=base)
    flags = [f"{key}={_yaml_value(getattr(args, flag))}" for flag, key in {**_FLAGS, **(flags or {})}.items()
             if getattr(args, flag, None) is not None]
    return apply_overrides(cfg, flags + list(args.overrides))


def _yaml_value(v) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def _cmd_train(args: argparse.Namespace) -> int:
    run(_config(args), resume=args.resume, overwrite=args.overwrite)
    return 0


def _cmd_mae(args: argparse.Namespace) -> int:
    cfg = _config(args, MAE_DEFAULTS, {"mask_ratio": "mae.mask_ratio"})
    print("etrain mae: RandomResizedCrop + flip only (no RandAugment: the curriculum's magnitude ramp does not "
          "apply; no mixup/cutmix, erasing or label smoothing)" if not cfg.aug.randaugment else
          f"etrain mae: note aug.randaugment={cfg.aug.randaugment} is on (MAE itself uses none)", flush=True)
    run_mae(cfg, resume=args.resume, overwrite=args.overwrite)
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    flags = {"source": "finetune.source", "weights": "finetune.weights", "linear_probe": "finetune.linear_probe",
             "layer_decay": "optim.layer_decay"}
    # the source and the probe choice may come from the flags, -c or --set alike: read them first, then build the
    # defaults they select (the source's architecture, MAE's pooling, the probe recipe) under what the user gave
    asked = _config(args, FINETUNE_DEFAULTS, flags).finetune
    source = load_source(asked.source, asked.weights) if asked.source and not args.resume else None
    base = merge_config_dicts(FINETUNE_DEFAULTS, source_model_defaults(source, asked.linear_probe))
    if asked.linear_probe:
        base = merge_config_dicts(base, LINEAR_PROBE_DEFAULTS)
    cfg = _config(args, base, flags)
    run_finetune(cfg, resume=args.resume, overwrite=args.overwrite, source=source)
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
    etpp = args.algorithm == "etpp"
    if etpp and args.tolerance is not None:
        raise SearchError("--tolerance applies to --algorithm et / forward; etpp keeps the most accurate size at "
                          "a fixed budget")
    if not etpp and args.cost is not None:
        raise SearchError("--cost applies to --algorithm etpp (et / forward trials all run --epochs epochs)")
    if args.seeds is not None and args.seed is not None:
        raise SearchError("give either --seed or --seeds")
    cfg = _config(args)
    stages = args.stages if args.stages is not None else (10 if etpp else 5)
    run_search(cfg, args.candidates, stages, args.algorithm, tolerance=args.tolerance or 0.0, metric=args.metric,
               seeds=args.seeds, cost=args.cost or "pixels")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    for path in plot_runs(args.runs, args.out):
        print(f"wrote {path}")
    print(compare_table(args.runs))
    return 0


def _cmd_shards(args: argparse.Namespace) -> int:
    patterns = write_shards(args.image_folder, args.out_dir, args.shard_size, seed=args.seed,
                            overwrite=args.overwrite)
    for split, pattern in patterns.items():
        print(f"{split}: {pattern}")
    if "train" in patterns:
        val = f" --set data.val_shards='{patterns['val']}'" if "val" in patterns else " --set data.val_split=0.1"
        print(f"train on them with: etrain train --dataset wds --set data.shards='{patterns['train']}'{val}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    run_compare(_config(args), [s for group in args.curricula for s in group], args.seeds, args.output,
                overwrite=args.overwrite, report_only=args.report_only)
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    run_analyze(args.checkpoints, args.output, config=args.config, overrides=args.overrides, lowpass=args.lowpass,
                highpass=args.highpass, cka=args.cka, cka_images=args.cka_images, cka_layers=args.cka_layers,
                weights=args.weights, labels=args.labels, batch_size=args.batch_size)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"train": _cmd_train, "mae": _cmd_mae, "finetune": _cmd_finetune, "schedule": _cmd_schedule,
                "search": _cmd_search, "plot": _cmd_plot, "shards": _cmd_shards, "compare": _cmd_compare,
                "analyze": _cmd_analyze}
    try:
        return handlers[args.command](args)
    except EtrainError as e:
        print(f"etrain {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
