"""One short training epoch under ``torch.cuda.set_sync_debug_mode("error")``: no host sync in the steady-state step.

Builds a small synthetic ImageFolder (random PNGs, two classes), a Trainer on it (the paper's recipe: RandAugment,
low-frequency crop to the first stage's B, random erasing, Mixup/CutMix, EMA, gradient clipping, AdamW, bf16
autocast), trains one warm-up epoch (first-step work: cuDNN autotuning, compilation, allocator growth), then one
epoch with sync debug mode "error": any operation that makes the host wait for the GPU raises, except the reads
the trainer marks as deliberate (the loss at each log interval and the epoch end). On a failure the epoch is run
again in "warn" mode and every synchronising call site is listed; the exit status is then 1.

    python scripts/sync_debug_epoch.py --device cuda              # ResNet-50, B = 160 of 224, eager
    python scripts/sync_debug_epoch.py --device cuda --compile model --channels-last
    python scripts/sync_debug_epoch.py --device cpu --model resnet10t --final-size 32 --batch 8 --steps 4

On the CPU there is nothing to debug: it runs the same epochs (to check the script) and says so.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
import warnings

import numpy as np
import torch
from PIL import Image

from efficienttrain_ext.config import load_config
from efficienttrain_ext.engine import Trainer


def make_folder(root: str, images: int, size: int, seed: int = 0) -> str:
    """``images`` random RGB PNGs of ``size`` px per split, in two classes, under root/{train,val}/<class>/."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", images), ("val", 8)):
        for i in range(n):
            d = os.path.join(root, split, f"class{i % 2}")
            os.makedirs(d, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(os.path.join(d, f"{i}.png"))
    return root


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--model", default="resnet50")
    p.add_argument("--final-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=16, help="steps per epoch (default 16)")
    p.add_argument("--log-interval", type=int, default=5, help="train.log_interval: deliberate reads inside the epoch")
    p.add_argument("--compile", default="off", choices=["off", "model", "model+pipeline"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--mode", default="error", choices=["error", "warn"], help="sync debug mode of the checked epoch")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device")
    return args


def build_trainer(args, work: str) -> Trainer:
    root = make_folder(os.path.join(work, "data"), args.batch * args.steps, args.final_size)
    cfg = load_config(overrides=[
        f"model.name={args.model}", f"data.root={root}", "data.dataset=imagefolder",
        f"data.final_size={args.final_size}", f"data.workers={args.workers}", "curriculum.name=efficienttrain",
        "train.epochs=10", f"train.batch_size={args.batch}", f"train.device={args.device}", "train.progress=false",
        f"train.log_interval={args.log_interval}", f"train.compile={args.compile}",
        f"train.channels_last={str(args.channels_last).lower()}", f"train.output={work}", "train.name=run"])
    return Trainer(cfg)


def list_sync_sites(trainer: Trainer, epoch: int) -> list[str]:
    """The epoch again under sync debug mode "warn": each distinct synchronising call site with its stack."""
    sites: dict[str, None] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.train_one_epoch(epoch)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    for w in caught:
        if "synchroniz" in str(w.message):
            sites[f"{w.filename}:{w.lineno}: {str(w.message).splitlines()[0]}"] = None
    return list(sites)


def main(argv=None) -> int:
    args = parse_args(argv)
    cuda = args.device.startswith("cuda")
    with tempfile.TemporaryDirectory(prefix="etrain_sync_") as work:
        t0 = time.perf_counter()
        trainer = build_trainer(args, work)
        size = trainer.plan.stage(0).size
        warm = trainer.train_one_epoch(0)
        print(f"warm-up epoch: B {size}, {warm['train_images']} images, compile {warm['compile_time']:.1f} s, "
              f"{warm['img_s']:.0f} img/s", flush=True)
        if cuda:
            torch.cuda.set_sync_debug_mode(args.mode)
        try:
            row = trainer.train_one_epoch(1)
        except RuntimeError as e:
            torch.cuda.set_sync_debug_mode(0)
            traceback.print_exc()
            print(f"FAILED: a host sync in the step ({str(e).splitlines()[0]}); every synchronising site of an "
                  "epoch in warn mode:", flush=True)
            for site in list_sync_sites(trainer, 2):
                print("  " + site)
            return 1
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode(0)
        checked = f"sync debug mode {args.mode!r}" if cuda else "CPU: nothing to debug, the same epoch ran"
        print(f"ok: epoch at B {size} ({row['train_images']} images, loss {row['train_loss']:.4f}, "
              f"{row['img_s']:.0f} img/s) under {checked}; model {args.model}, compile {args.compile}, "
              f"channels_last {args.channels_last}, amp {trainer.amp_dtype}; {time.perf_counter() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
