#!/usr/bin/env python
"""Run timm's own ``train.py`` with the EfficientTrain curriculum.

    python scripts/timm_train_efficienttrain.py --et-train-py ~/pytorch-image-models/train.py \\
        [--et-curriculum efficienttrain] [--et-import my_models] -- <train.py's usual arguments>

timm's ``train.py`` is not part of the timm wheel; pass the one of your checkout (it is imported as a module, not
copied). Its loop runs unchanged; four of its functions are wrapped:

* ``_parse_args``: the curriculum takes over RandAugment (``--aa``, its m then follows the schedule) and random
  erasing (``--reprob``/``--remode``/``--recount``), which must come after RandAugment, so the loader does neither (nor
  colour jitter, which timm turns off when ``--aa`` is given); ``--no-prefetcher`` is set (the prefetcher would apply
  Mixup and erasing before the curriculum sees the images); ``--epochs`` becomes the schedule's length
  (efficienttrain++ runs longer than its budget).
* ``train_one_epoch``: before each epoch the model (and its EMA) is brought to the stage's size, the optimizer
  re-pointed; the loader is wrapped in :class:`~efficienttrain_ext.integrations.CurriculumLoader` (each batch:
  de-normalised to uint8 on the host, RandAugment at m, low-frequency crop to B, normalised, erased); train.py's
  Mixup/CutMix then runs on the cropped batch, as in ``etrain train``.
* ``validate``: a model built for another size is evaluated on a resized copy at the final size.
* ``resume_checkpoint`` / ``resume_task_checkpoint``: the model is brought to the checkpoint's size first.

Models whose Parameters do not depend on the input size (ResNet, ConvNeXt, PVT-v2, CAFormer, CSWin, ViT built with
``--model-kwargs dynamic_img_size=True``) work in every mode, DDP included; a ViT/Swin size switch replaces
Parameters, which a DDP wrapper created inside train.py cannot follow: that case stops with a message (use
``dynamic_img_size=True``, ``etrain train`` or the Lightning callback). Tested with train.py of timm 1.0.x; see
docs/integrations.md.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from typing import Any, Callable

import torch
import yaml
from timm.data import resolve_data_config
from timm.data.random_erasing import RandomErasing
from timm.utils import unwrap_model

import timm
from efficienttrain_ext import models as _own_models  # noqa: F401  (registers cswin_*)
from efficienttrain_ext.curriculum import plan, resized_view
from efficienttrain_ext.curriculum.sizes import can_resize, current_input_size
from efficienttrain_ext.errors import EtrainError, TrainError
from efficienttrain_ext.integrations import CurriculumBatch


def _own_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    p.add_argument("--et-train-py", required=True, help="timm's train.py (from a pytorch-image-models checkout)")
    p.add_argument("--et-curriculum", default="efficienttrain",
                   help="efficienttrain | efficienttrain++ | progressive | none | FILE.yaml")
    p.add_argument("--et-m0", type=float, default=9.0, help="final RandAugment magnitude (default 9)")
    p.add_argument("--et-randaugment-impl", default="batched", choices=["batched", "timm"])
    p.add_argument("--et-import", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (e.g. one registering your timm models); repeatable")
    p.add_argument("--et-help", action="help", help="show this help")
    ours, rest = p.parse_known_args(argv)
    if rest and rest[0] == "--":
        rest = rest[1:]
    return ours, rest


def load_train_py(path: str):
    """timm's train.py as a module (its ``main()`` is not run on import)."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise TrainError(f"--et-train-py {path}: no such file (timm's train.py lives in the pytorch-image-models "
                         "repository, not in the timm wheel)")
    spec = importlib.util.spec_from_file_location("timm_train_py", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["timm_train_py"] = module
    spec.loader.exec_module(module)
    for name in ("_parse_args", "train_one_epoch", "validate", "main"):
        if not callable(getattr(module, name, None)):
            raise TrainError(f"{path} has no {name}(): not a timm train.py this wrapper knows")
    return module


class TimmCurriculum:
    """The curriculum's glue around one train.py run (module docstring)."""

    def __init__(self, opts: argparse.Namespace):
        self.opts = opts
        self.step: CurriculumBatch | None = None
        self.final_size = 0
        self.erasing: dict[str, Any] = {}
        self.policy: str | None = None
        self.primary = int(os.environ.get("RANK", "0")) == 0

    def _log(self, msg: str) -> None:
        if self.primary:
            print(f"EfficientTrain: {msg}", flush=True)

    # ---------------------------------------------------------------- arguments
    def take_over(self, args: argparse.Namespace) -> argparse.Namespace:
        for bad, why in (("aug_splits", "AugMix splits"), ("jsd_loss", "the JSD loss"),
                         ("naflex_loader", "the NaFlex loader"), ("train_img_sizes", "scheduled image sizes")):
            if getattr(args, bad, None):
                raise TrainError(f"--{bad.replace('_', '-')}: {why} cannot be combined with the curriculum")
        self.policy, args.aa = args.aa, None
        self.erasing = dict(probability=args.reprob, mode=args.remode, max_count=args.recount)
        args.reprob = 0.0
        if getattr(args, "color_jitter", None) and self.policy:
            args.color_jitter = None  # timm disables it when --aa is given; the loader no longer sees --aa
        if not args.no_prefetcher:
            args.no_prefetcher = True
            self._log("--no-prefetcher set (the prefetcher mixes and erases before the curriculum's crop)")
        if not self.policy:
            self._log("no --aa given: no RandAugment (EfficientTrain's recipe uses --aa rand-m9-mstd0.5-inc1)")
        kwargs = dict(getattr(args, "model_kwargs", None) or {})
        with torch.device("meta"):  # the size rule and data config, without building the real model
            probe = timm.create_model(args.model, num_classes=args.num_classes or 1000, **kwargs)
        cfg = resolve_data_config(vars(args), model=probe)
        self.final_size = int(cfg["input_size"][-1])
        self.mean, self.std = tuple(cfg["mean"]), tuple(cfg["std"])
        budget = args.epochs
        schedule = plan(self.opts.et_curriculum, epochs=budget, final_size=self.final_size, model=probe,
                        m0=self.opts.et_m0)
        args.epochs = schedule.epochs
        self.schedule = schedule
        self._log(f"{schedule.name}, {schedule.epochs} epochs (budget {budget}), sizes "
                  + ", ".join(f"{s.start + 1}-{s.end}: {s.size}" for s in schedule.stages))
        return args

    def _make_step(self, device: torch.device) -> CurriculumBatch:
        if self.step is None:
            erasing = RandomErasing(device=str(device), **self.erasing) if self.erasing.get("probability") else None
            self.step = CurriculumBatch(self.schedule, self.mean, self.std, randaugment=self.policy,
                                        backend=self.opts.et_randaugment_impl, input_mean=self.mean,
                                        input_std=self.std, erasing=erasing)
        return self.step

    # ---------------------------------------------------------------- the loop
    @staticmethod
    def _emas(kwargs: dict[str, Any]) -> list[torch.nn.Module]:
        ema = kwargs.get("model_ema")  # train.py up to 1.0.2x
        task = kwargs.get("task")  # later train.py: a timm.task object owns the EMA
        if ema is None and task is not None and callable(getattr(task, "get_trainable_module", None)):
            ema = task.get_trainable_module(ema=True)
        return [] if ema is None else [unwrap_model(ema)]

    def train_one_epoch(self, original: Callable) -> Callable:
        def wrapped(epoch, model, loader, optimizer, *args, **kwargs):
            device = torch.device(kwargs.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
            step = self._make_step(device)
            target = unwrap_model(model)
            replaced = step.switch(target, epoch, optimizer, self._emas(kwargs))
            if replaced and target is not model:
                raise TrainError(f"the switch to {step.size_at(epoch)} px replaced Parameters {replaced[:3]} of a "
                                 "model that train.py wrapped (DDP): build it with --model-kwargs "
                                 "dynamic_img_size=True, or use `etrain train` / the Lightning callback")
            self._log(f"epoch {epoch}: B={step.size_at(epoch)}, m from {step.magnitude_at(epoch):.2f}")
            return original(epoch, model, step.wrap(loader, epoch, device), optimizer, *args, **kwargs)
        return wrapped

    def _view(self, model):
        inner = unwrap_model(model)
        if can_resize(inner) and current_input_size(inner) not in (None, self.final_size):
            return resized_view(inner, self.final_size)
        return model

    def validate(self, original: Callable) -> Callable:
        def wrapped(model, loader, *args, **kwargs):
            return original(self._view(model), loader, *args, **kwargs)
        return wrapped

    def resume(self, original: Callable) -> Callable:
        def wrapped(model_or_task, checkpoint_path, *args, **kwargs):
            with torch.serialization.safe_globals([argparse.Namespace]):  # train.py stores its args
                ck = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
            epoch = int(ck.get("epoch", 0)) if isinstance(ck, dict) else 0
            getter = getattr(model_or_task, "get_trainable_module", None)
            model = unwrap_model(getter() if callable(getter) else model_or_task)
            optimizer = kwargs.get("optimizer", args[0] if args else None)
            self._make_step(next(model.parameters()).device).switch(model, epoch, optimizer)
            del ck
            return original(model_or_task, checkpoint_path, *args, **kwargs)
        return wrapped


def main(argv: list[str] | None = None) -> int:
    opts, rest = _own_args(sys.argv[1:] if argv is None else argv)
    for name in opts.et_import:
        importlib.import_module(name)
    mod = load_train_py(opts.et_train_py)
    cur = TimmCurriculum(opts)
    parse = mod._parse_args

    def parse_args():
        args, _ = parse()
        args = cur.take_over(args)
        return args, yaml.safe_dump(args.__dict__, default_flow_style=False)

    mod._parse_args = parse_args
    mod.train_one_epoch = cur.train_one_epoch(mod.train_one_epoch)
    mod.validate = cur.validate(mod.validate)
    for name in ("resume_checkpoint", "resume_task_checkpoint"):
        if callable(getattr(mod, name, None)):
            setattr(mod, name, cur.resume(getattr(mod, name)))
    sys.argv = [opts.et_train_py, *rest]
    try:
        mod.main()
    except EtrainError as e:
        print(f"timm_train_efficienttrain: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
