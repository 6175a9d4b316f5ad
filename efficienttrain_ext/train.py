"""The training driver: any timm model, a curriculum, one process or DDP (``torchrun``), exact resume.

Per step, on the training device: RandAugment(m(t)) -> lowfreq_crop(B(t)) -> normalise -> random erasing ->
Mixup/CutMix -> model. Stage switches happen in-process at epoch boundaries (see ``resize.py``); checkpoints are
written atomically at every epoch end and at every stage switch.

Run ``etrain train --help`` (or ``python -m efficienttrain_ext.train --help``) for the command line.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

import timm
from timm.data import Mixup
from timm.data.random_erasing import RandomErasing
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, dispatch_clip_grad

from . import checkpoint as ckpt_io
from .augment_timm import TimmBatchRandAugment, randaugment_hparams
from .config import Config, config_to_dict, save_config, trajectory_dict
from .curriculum import Schedule, build_schedule, etpp_family, schedule_table, stage_costs
from .data import build_datasets, collate_skip
from .flops import flops_by_size
from .replay import replay_batches
from .report import MetricsLog, summary_table
from .resize import current_input_size, resized_view, size_rule_for_model, switch_input_size

__all__ = ["Trainer", "TrainError", "create_model", "make_schedule", "main"]


class TrainError(RuntimeError):
    """A run that cannot start (bad model name, unusable resume file, existing run directory, ...)."""


# ---------------------------------------------------------------------------------------------------------------
# model and schedule


def create_model(cfg: Config, num_classes: int) -> nn.Module:
    name = cfg.model.name
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise TrainError(f"unknown timm model {name!r}{hint}")
    kwargs: dict[str, Any] = dict(cfg.model.kwargs)
    if cfg.model.drop_path is not None:
        kwargs.setdefault("drop_path_rate", cfg.model.drop_path)
    if cfg.model.pretrained_file:
        if not os.path.isfile(cfg.model.pretrained_file):
            raise TrainError(f"pretrained weights {cfg.model.pretrained_file} not found")
        # timm adapts the file (classifier dropped when num_classes differs, pos_embed resampled)
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": cfg.model.pretrained_file})
    try:
        return timm.create_model(name, num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise TrainError(f"model {name!r} does not accept {sorted(kwargs)}: {e}") from e


def _make_randaugment(policy: str | None, impl: str, final_size: int, mean: tuple[float, ...]):
    """Batch RandAugment behind one interface: settable ``magnitude``, ``__call__(uint8 batch, generator=None)``."""
    if not policy:
        return None
    hparams = randaugment_hparams(final_size, mean)
    if impl == "timm":
        return TimmBatchRandAugment(policy, hparams)
    if impl == "batched":
        from .augment import RandAugment  # batched, on the training device

        return RandAugment(policy, hparams)
    raise TrainError(f"aug.randaugment_impl must be timm or batched, got {impl!r}")


def make_schedule(cfg: Config, model: nn.Module) -> Schedule:
    rule = size_rule_for_model(model, cfg.curriculum.size_multiple)
    family = cfg.curriculum.family or etpp_family(model)
    return build_schedule(cfg.curriculum.name, cfg.train.epochs, cfg.data.final_size, rule,
                          m0=cfg.curriculum.m0, family=family, options=cfg.curriculum.options)


# ---------------------------------------------------------------------------------------------------------------
# process setup


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_pref: str) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = device_pref != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return info


def _resolve_device(pref: str, info: DistInfo) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(pref)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)
    return device


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    if mode == "off":
        return None
    if mode == "auto":
        if device.type != "cuda":
            return None  # CPU autocast is slower than fp32 on most CPUs without AMX
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode in ("bf16", "fp16"):
        if mode == "fp16" and device.type != "cuda":
            raise TrainError("train.amp=fp16 needs a CUDA device (use bf16 on CPU)")
        return torch.bfloat16 if mode == "bf16" else torch.float16
    raise TrainError(f"train.amp must be auto, off, bf16 or fp16, got {mode!r}")


# ---------------------------------------------------------------------------------------------------------------
# the trainer


class Trainer:
    """One training run. ``Trainer(cfg, run_dir=..., resume=...).fit()`` returns the final metrics row."""

    def __init__(self, cfg: Config, run_dir: str | None = None, resume: str | None = None, overwrite: bool = False):
        self.cfg = cfg
        self.info = _init_distributed(cfg.train.device)
        self.device = _resolve_device(cfg.train.device, self.info)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        _seed_all(cfg.train.seed)  # identical model init on every rank

        resume_ckpt = self._load_resume(resume) if resume else None
        self.run_dir = self._prepare_run_dir(run_dir, resume, overwrite)

        # data
        d = cfg.data
        self.data = build_datasets(d.dataset, d.root, d.final_size, scale=d.scale, ratio=d.ratio, hflip=d.hflip,
                                   interpolation=d.interpolation, crop_pct=d.crop_pct,
                                   train_subset=d.train_subset, val_subset=d.val_subset)
        self.train_gen = torch.Generator()  # the training loaders' shuffling, seeded per epoch
        self._loaders: dict[int, DataLoader] = {}
        self.val_loader = self._val_loader()
        # the learning-rate schedule counts epochs in steps of train.batch_size
        self.ref_steps = self._check_steps(cfg.train.batch_size)

        # model, schedule and its predicted cost (also checks every size runs)
        self.model = create_model(cfg, self.data.num_classes)
        self.schedule = make_schedule(cfg, self.model)
        # per stage batch (curriculum batch_scale) and per epoch optimisation steps
        self.stage_batch = [max(1, int(round(cfg.train.batch_size * st.batch_scale))) for st in self.schedule.stages]
        stage_steps = [self._check_steps(b) for b in self.stage_batch]
        self.epoch_steps = [stage_steps[self.schedule.stage_index(e)] for e in range(self.schedule.epochs)]
        self.epoch_start = [0]
        for n in self.epoch_steps:
            self.epoch_start.append(self.epoch_start[-1] + n)
        self.total_steps = self.epoch_start[-1]
        self.flops = flops_by_size(self.model, [s.size for s in self.schedule.stages] + [d.final_size])
        self.stage_costs, self.predicted_cost = stage_costs(self.schedule, self.flops)

        self.model.to(self.device)
        start_size = resume_ckpt["input_size"] if resume_ckpt else self.schedule.stages[0].size
        switch_input_size(self.model, start_size)

        # optimisation (timm factories)
        o = cfg.optim
        global_batch = cfg.train.batch_size * self.info.world
        self.lr = o.lr if o.lr is not None else o.base_lr * global_batch / o.base_batch
        self.optimizer = create_optimizer_v2(self.model, o.opt, lr=self.lr, weight_decay=o.weight_decay,
                                             momentum=o.momentum)
        warmup = o.warmup_epochs if o.warmup_epochs is not None else self.schedule.epochs * 20 / 300
        self.lr_scheduler, _ = create_scheduler_v2(
            self.optimizer, o.sched, num_epochs=self.schedule.epochs, warmup_epochs=warmup, warmup_lr=o.warmup_lr,
            min_lr=o.min_lr, step_on_epochs=False, updates_per_epoch=self.ref_steps)
        self.amp_dtype = _amp_dtype(cfg.train.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.ema = ModelEmaV3(self.model, decay=cfg.train.ema_decay, use_warmup=cfg.train.ema_warmup) \
            if cfg.train.ema else None

        # per-step augmentation and loss
        a = cfg.aug
        self.randaug = _make_randaugment(a.randaugment, a.randaugment_impl, d.final_size, self.data.mean)
        self.mean = torch.tensor(self.data.mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(self.data.std, device=self.device).view(1, -1, 1, 1)
        self.erasing = RandomErasing(a.reprob, mode=a.remode, device=str(self.device)) if a.reprob > 0 else None
        self.mixup = None
        if a.mixup > 0 or a.cutmix > 0:
            self.mixup = Mixup(mixup_alpha=a.mixup, cutmix_alpha=a.cutmix, prob=a.mixup_prob,
                               switch_prob=a.mixup_switch_prob, label_smoothing=a.smoothing,
                               num_classes=self.data.num_classes)
            self.criterion: nn.Module = SoftTargetCrossEntropy()
        elif a.smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(a.smoothing)
        else:
            self.criterion = nn.CrossEntropyLoss()
        self.val_criterion = nn.CrossEntropyLoss(reduction="sum")

        # progress state
        self.start_epoch = 0
        self.wall_offset = 0.0
        self.skipped: set[str] = set()
        if resume_ckpt:
            self._restore(resume_ckpt)
        else:
            # distinct augmentation streams per rank, after the shared model init
            _seed_all(cfg.train.seed + 1000003 * self.info.rank + 1)
        self.ddp_model = self._wrap()
        self.log = MetricsLog(self.run_dir, keep_epochs=self.start_epoch, tensorboard=cfg.train.tensorboard) \
            if self.info.main else None
        if self.info.main:
            save_config(cfg, os.path.join(self.run_dir, "config.yaml"))
            with open(os.path.join(self.run_dir, "schedule.json"), "w") as f:
                json.dump(self._schedule_record(), f, indent=1)

    # ----- setup helpers

    def _prepare_run_dir(self, run_dir: str | None, resume: str | None, overwrite: bool) -> str:
        if run_dir is None and resume:
            run_dir = resume if os.path.isdir(resume) else os.path.dirname(os.path.abspath(resume))
        if run_dir is None:
            name = self.cfg.train.name or f"{self.cfg.model.name}-{self.cfg.curriculum.name.replace('/', '_')}"
            run_dir = os.path.join(self.cfg.train.output, name)
        exists = os.path.exists(os.path.join(run_dir, "metrics.jsonl"))
        if exists and not resume and not overwrite:  # checked on every rank, so all ranks stop together
            raise TrainError(f"run directory {run_dir} already holds a run; pass --resume {run_dir} to continue "
                             "it, --overwrite to replace it, or another --name")
        if self.info.main:
            if exists and overwrite and not resume:
                for f in os.listdir(run_dir):
                    if f.endswith((".pt", ".jsonl", ".csv", ".json", ".png")):
                        os.unlink(os.path.join(run_dir, f))
            os.makedirs(run_dir, exist_ok=True)
        return run_dir

    def _train_loader(self, batch: int) -> DataLoader:
        """The training loader for a per-process batch size (one per distinct stage batch, built once)."""
        if batch not in self._loaders:
            ds, cfg, info = self.data.train, self.cfg, self.info
            sampler = DistributedSampler(ds, info.world, info.rank, shuffle=True, seed=cfg.train.seed,
                                         drop_last=True) if info.enabled else None
            self._loaders[batch] = DataLoader(ds, batch_size=batch, shuffle=sampler is None, sampler=sampler,
                                              num_workers=cfg.data.workers, drop_last=True, collate_fn=collate_skip,
                                              generator=self.train_gen, pin_memory=self.device.type == "cuda")
        return self._loaders[batch]

    def _check_steps(self, batch: int) -> int:
        steps = len(self._train_loader(batch))
        if steps == 0:
            raise TrainError(f"the training set ({len(self.data.train)} images) is smaller than one global batch "
                             f"({batch} x {self.info.world})")
        return steps

    def _updates(self, epoch: int, done: int) -> int:
        """Learning-rate schedule position after ``done`` steps of ``epoch``, in steps of train.batch_size."""
        return epoch * self.ref_steps + done * self.ref_steps // self.epoch_steps[epoch]

    def _set_lr(self, updates: int, factor: float) -> None:
        """timm's scheduler value at ``updates``, times the stage's batch factor (linear scaling rule)."""
        self.lr_scheduler.step_update(num_updates=updates)
        if factor != 1.0:
            for group in self.optimizer.param_groups:
                group["lr"] *= factor

    def _val_loader(self) -> DataLoader:
        ds, info = self.data.val, self.info
        if info.enabled:  # plain strided shard without padding, so sums over ranks count every image once
            ds = Subset(ds, range(info.rank, len(ds), info.world))
        return DataLoader(ds, batch_size=self.cfg.train.batch_size, shuffle=False, num_workers=self.cfg.data.workers,
                          collate_fn=collate_skip, pin_memory=self.device.type == "cuda")

    def _wrap(self) -> nn.Module:
        if not self.info.enabled:
            return self.model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids)

    def _schedule_record(self) -> dict[str, Any]:
        rec = self.schedule.to_dict()
        for i, (st, cost) in enumerate(zip(rec["stages"], self.stage_costs)):
            st.update(flops_per_image=cost.flops_per_image, relative_flops=cost.relative_flops,
                      compute=cost.compute, baseline_epochs=self.schedule.baseline, batch=self.stage_batch[i],
                      steps_per_epoch=self.epoch_steps[self.schedule.stages[i].start])
        rec["predicted_cost"] = self.predicted_cost
        rec["steps_per_epoch"] = self.ref_steps  # at train.batch_size (the learning-rate schedule's epoch)
        rec["total_steps"] = self.total_steps
        return rec

    # ----- checkpoints

    def _load_resume(self, path: str) -> dict[str, Any]:
        ck = ckpt_io.load(path)
        mine = ckpt_io.fingerprint(trajectory_dict(self.cfg))
        if ck["fingerprint"] != mine:
            theirs = ck["config"]
            ours = config_to_dict(self.cfg)
            diff = [f"{s}.{k}: {theirs.get(s, {}).get(k)!r} -> {v!r}" for s, sec in ours.items()
                    for k, v in sec.items() if theirs.get(s, {}).get(k) != v]
            raise TrainError(f"checkpoint {path} was written by a different configuration; differences: "
                             + "; ".join(diff))
        if ck["world_size"] != self.info.world:
            raise TrainError(f"checkpoint {path} was written by {ck['world_size']} processes, this run has "
                             f"{self.info.world}: an exact resume needs the same world size")
        return ck

    def _state(self, epoch: int, stage: int) -> dict[str, Any]:
        rng = ckpt_io.rng_state()
        rngs = [rng]
        if self.info.enabled:
            rngs = [None] * self.info.world
            dist.all_gather_object(rngs, rng)
        return {
            "format": ckpt_io.FORMAT,
            "fingerprint": ckpt_io.fingerprint(trajectory_dict(self.cfg)),
            "config": config_to_dict(self.cfg),
            "epoch": epoch,
            "stage": stage,
            "global_step": self.epoch_start[epoch],
            "input_size": current_input_size(self.model) or self.schedule.size_at(max(epoch - 1, 0)),
            "world_size": self.info.world,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema else None,
            "scaler": self.scaler.state_dict(),
            "rng": rngs,
            "wall_time": self.wall_offset + (time.perf_counter() - self.t0),
            "skipped": sorted(self.skipped),
        }

    def _save(self, name: str, epoch: int, stage: int) -> None:
        state = self._state(epoch, stage)  # collective (RNG gather): every rank takes part
        if self.info.main:
            ckpt_io.save_atomic(state, os.path.join(self.run_dir, name))

    def _restore(self, ck: dict[str, Any]) -> None:
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.lr_scheduler.load_state_dict(ck["lr_scheduler"])
        if self.ema is not None:
            if ck["ema"] is None:
                raise TrainError("checkpoint has no EMA weights but train.ema is on")
            self.ema.module.load_state_dict(ck["ema"])
        self.scaler.load_state_dict(ck["scaler"])
        ckpt_io.set_rng_state(ck["rng"][self.info.rank])
        self.start_epoch = int(ck["epoch"])
        self.wall_offset = float(ck["wall_time"])
        self.skipped = set(ck["skipped"])

    # ----- the step pipeline

    def _prepare_batch(self, x: torch.Tensor, y: torch.Tensor, size: int, m: float):
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        if self.randaug is not None:
            self.randaug.magnitude = m
            x = self.randaug(x)
        x = x.float().div_(255.0)
        if size < x.shape[-1]:
            from .ops import lowfreq_crop  # the compiled op; imported late so the rest works without it

            x = lowfreq_crop(x, size)
        x = (x - self.mean) / self.std
        if self.erasing is not None:
            x = self.erasing(x)
        if self.mixup is not None:
            if x.shape[0] % 2:  # timm's Mixup pairs images: drop one when skipped images made the batch odd
                x, y = x[:-1], y[:-1]
            x, y = self.mixup(x, y)
        return x, y

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _note_skipped(self, bad: list[str]) -> None:
        for p in bad:
            if p not in self.skipped:
                self.skipped.add(p)
                warnings.warn(f"skipping unreadable image {p}", RuntimeWarning, stacklevel=2)

    def _switch_stage(self, stage: int) -> None:
        size = self.schedule.stages[stage].size
        replaced = switch_input_size(self.model, size, self.optimizer, [self.ema.module] if self.ema else [])
        if replaced and self.info.enabled:
            self.ddp_model = self._wrap()  # DDP holds the old Parameter objects

    def train_one_epoch(self, epoch: int, stage: int) -> dict[str, Any]:
        cfg = self.cfg
        st = self.schedule.stages[stage]
        size, replay, n_steps = st.size, st.replay, self.epoch_steps[epoch]
        loader = self._train_loader(self.stage_batch[stage])
        lr_factor = self.stage_batch[stage] / cfg.train.batch_size
        self.ddp_model.train()
        self.train_gen.manual_seed(cfg.train.seed * 100003 + epoch * 1009 + self.info.rank)
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        self._set_lr(self._updates(epoch, 0), lr_factor)  # a new stage's batch factor applies from its first step
        loss_sum = torch.zeros((), dtype=torch.float64)
        images = loaded = 0
        steps = 0
        # replay order: seeded per (epoch, rank) like the loader, so a resumed run replays identically
        replay_gen = torch.Generator().manual_seed(cfg.train.seed * 7919 + epoch * 131 + self.info.rank)
        batches = replay_batches(loader, replay, n_steps, replay_gen)
        m = lr = 0.0
        title = f"epoch {epoch + 1}/{self.schedule.epochs} B={size}" + (f" replay {replay}" if replay > 1 else "")
        bar = _progress(n_steps, title, enabled=cfg.train.progress and self.info.main)
        t_start, cpu_start = time.perf_counter(), time.process_time()
        for i, ((x, y, bad), fresh) in enumerate(batches):
            step = self.epoch_start[epoch] + i
            if cfg.train.debug_kill_at_step is not None and step == cfg.train.debug_kill_at_step:
                os._exit(3)  # test hook: die like a killed process (no cleanup, no checkpoint)
            if fresh:
                self._note_skipped(bad)
                loaded += x.shape[0]
            if x.shape[0] < 2:  # a batch of unreadable images (under DDP every rank must skip alike: rare)
                continue
            # m0 t/T over training progress in epochs, like the learning rate (the same as per step when every
            # stage has train.batch_size; with batch_scale, steps of different sizes count by the images they train)
            m = self.schedule.magnitude_at(self._updates(epoch, i), self.schedule.epochs * self.ref_steps, epoch)
            x, y = self._prepare_batch(x, y, size, m)
            with self._autocast():
                out = self.ddp_model(x)
                loss = self.criterion(out, y)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss is {loss_value} at epoch {epoch + 1}, step {i}")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.optim.clip_grad is not None:
                self.scaler.unscale_(self.optimizer)
                dispatch_clip_grad(self.model.parameters(), cfg.optim.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(self.model, step=step + 1)
            self._set_lr(self._updates(epoch, i + 1), lr_factor)
            lr = self.optimizer.param_groups[0]["lr"]
            loss_sum += loss.detach().double().cpu() * x.shape[0]
            images += x.shape[0]
            steps += 1
            if bar is not None:
                el = time.perf_counter() - t_start
                bar.set_postfix_str(f"{images * self.info.world / el:.0f} img/s, loss {loss_value:.3f}, B {size}, "
                                    f"m {m:.2f}, lr {lr:.2e}", refresh=False)
                bar.update(1)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        train_time = time.perf_counter() - t_start
        cpu_time = time.process_time() - cpu_start  # all threads of this process; robust to a busy machine
        if bar is not None:
            bar.close()
        self.lr_scheduler.step(epoch + 1)
        stats = torch.tensor([float(loss_sum), float(images), float(loaded)], dtype=torch.float64)
        if self.info.enabled:
            dist.all_reduce(stats)
        return {"train_loss": float(stats[0] / max(stats[1], 1)), "train_images": int(stats[1]),
                "loaded_images": int(stats[2]), "replay": replay,
                "train_time": train_time, "train_cpu_time": cpu_time, "img_s": float(stats[1]) / max(train_time, 1e-9),
                "magnitude": m, "lr": lr}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, size: int | None = None) -> dict[str, float]:
        """Top-1/top-5/loss on the validation set (final-size images; low-frequency cropped to ``size``)."""
        model.eval()
        sums = torch.zeros(4, dtype=torch.float64)  # loss, top1, top5, count
        for x, y, bad in self.val_loader:
            self._note_skipped(bad)
            if x.shape[0] == 0:
                continue
            x, y = x.to(self.device), y.to(self.device)
            x = x.float().div_(255.0)
            if size is not None and size < x.shape[-1]:
                from .ops import lowfreq_crop

                x = lowfreq_crop(x, size)
            x = (x - self.mean) / self.std
            with self._autocast():
                out = model(x)
            out = out.float()
            k = min(5, out.shape[1])
            top = out.topk(k, dim=1).indices
            hit = top.eq(y[:, None])
            sums += torch.tensor([float(self.val_criterion(out, y)), float(hit[:, 0].sum()), float(hit.any(1).sum()),
                                  float(x.shape[0])], dtype=torch.float64)
        if self.info.enabled:
            dist.all_reduce(sums)
        n = max(float(sums[3]), 1.0)
        return {"val_loss": float(sums[0]) / n, "top1": 100.0 * float(sums[1]) / n, "top5": 100.0 * float(sums[2]) / n}

    def _eval_all(self, size: int) -> dict[str, Any]:
        final = self.cfg.data.final_size
        row = self.evaluate(resized_view(self.model, final))
        if self.ema is not None:
            ema = self.evaluate(resized_view(self.ema.module, final))
            row.update(ema_top1=ema["top1"], ema_top5=ema["top5"], ema_val_loss=ema["val_loss"])
        if size < final and self.cfg.train.eval_at_stage_size:
            row["top1_at_B"] = self.evaluate(self.model, size)["top1"]
        return row

    # ----- the loop

    def fit(self) -> dict[str, Any]:
        self.t0 = time.perf_counter()
        if self.info.main:
            print(schedule_table(self.schedule, self.flops), flush=True)
            steps = "/".join(str(self.epoch_steps[st.start]) for st in self.schedule.stages)
            batches = "/".join(str(b * self.info.world) for b in self.stage_batch)
            print(f"run directory: {self.run_dir}; steps/epoch {steps}, global batch {batches} (per stage), "
                  f"lr {self.lr:.3g} at {self.cfg.train.batch_size * self.info.world}, device {self.device}",
                  flush=True)
        train_total = sum(r["train_time"] for r in (self.log.rows if self.log else []))
        last: dict[str, Any] = self.log.rows[-1] if self.log and self.log.rows else {}
        for epoch in range(self.start_epoch, self.schedule.epochs):
            stage = self.schedule.stage_index(epoch)
            prev_stage = self.schedule.stage_index(epoch - 1) if epoch > 0 else None
            if stage != prev_stage or current_input_size(self.model) not in (None, self.schedule.stages[stage].size):
                self._switch_stage(stage)
                if epoch > 0 and epoch != self.start_epoch:
                    self._save(f"stage{stage}.pt", epoch, stage)
            size = self.schedule.stages[stage].size
            row: dict[str, Any] = {"epoch": epoch + 1, "stage": stage, "size": size}
            row.update(self.train_one_epoch(epoch, stage))
            train_total += row["train_time"]
            row.update(self._eval_all(size))
            row["train_time_total"] = train_total
            row["wall_time"] = self.wall_offset + (time.perf_counter() - self.t0)
            row["skipped_images"] = len(self.skipped)
            if self.log is not None:
                self.log.append(row)
                print(_epoch_line(row), flush=True)
            self._save("last.pt", epoch + 1, stage)
            last = row
        if self.info.main:
            self._finish()
        return last

    def _finish(self) -> None:
        stages = self._schedule_record()["stages"]
        table = summary_table(self.log.rows, stages, self.predicted_cost, self.cfg.data.final_size)
        print(table, flush=True)
        with open(os.path.join(self.run_dir, "summary.txt"), "w") as f:
            f.write(table + "\n")
        last = self.log.rows[-1] if self.log.rows else {}
        summary = {"final": last, "predicted_cost": self.predicted_cost, "run_dir": self.run_dir,
                   "curriculum": self.schedule.name, "model": self.cfg.model.name}
        with open(os.path.join(self.run_dir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        self.log.close()


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False, mininterval=1.0, file=sys.stderr)


def _epoch_line(r: dict[str, Any]) -> str:
    parts = [f"epoch {r['epoch']}", f"B {r['size']}", f"loss {r['train_loss']:.4f}", f"top1 {r['top1']:.2f}%"]
    if "ema_top1" in r:
        parts.append(f"ema {r['ema_top1']:.2f}%")
    if "top1_at_B" in r:
        parts.append(f"top1@B {r['top1_at_B']:.2f}%")
    parts += [f"{r['img_s']:.0f} img/s", f"train {r['train_time']:.1f}s", f"wall {r['wall_time']:.1f}s"]
    return " | ".join(parts)


def run(cfg: Config, run_dir: str | None = None, resume: str | None = None, overwrite: bool = False) -> dict:
    trainer = Trainer(cfg, run_dir=run_dir, resume=resume, overwrite=overwrite)
    try:
        return trainer.fit()
    finally:
        if trainer.info.enabled and dist.is_initialized():
            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    from .cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
