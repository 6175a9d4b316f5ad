"""The training driver: any timm model (or your own), a curriculum, one process or DDP (``torchrun``), exact resume.

One step: the :class:`~.stage_plan.StagePlan` says the stage, batch, progress, magnitude and learning rate; the
:class:`~.pipeline.BatchPipeline` turns the loaded uint8 batch into the model's input (RandAugment at m -> float ->
low-frequency crop to B -> normalise -> erasing -> mixup); the model trains on it. Stage switches happen in-process
at epoch boundaries (:mod:`efficienttrain_ext.curriculum.switching`); checkpoints are written atomically at every
epoch end and at every stage switch, so a killed run resumes from its last epoch exactly.

Run ``etrain train --help`` for the command line.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import time
import warnings
from typing import Any, Callable

import torch
from torch import nn
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, dispatch_clip_grad
from tqdm import tqdm

from ..config import Config, config_from_dict, config_to_dict, config_yaml, trajectory_dict
from ..curriculum import plan as curriculum_plan
from ..curriculum.flops import flops_by_size
from ..curriculum.replay import SampleReplayBuffer
from ..curriculum.schedules import Schedule
from ..curriculum.sizes import current_input_size
from ..curriculum.switching import resized_view, switch_input_size
from ..curriculum.tables import schedule_table, stage_costs
from ..data import Datasets, build_datasets, download_cifar10
from ..data.device_cache import cache_datasets
from ..errors import ConfigError, DataError, TrainError
from . import checkpoint as ckpt_io
from .accumulation import Accumulation, replay_micro_batches, resolve_accum_steps
from .atomic import write_text_atomic
from .acceleration import (CompileClock, compile_module, optimizer_kernel_options, recompile_room, resolve_compile,
                           to_channels_last, use_cudnn_autotuning)
from .collectives import Collectives
from .distributed import DistInfo, init_distributed, resolve_device, seed_all
from .loaders import LOADERS, EpochLoader, build_val_loader
from .loss_monitor import DeviceLossMonitor, host_sync_allowed
from .metrics import MetricsLog
from .model_factory import create_model
from .pipeline import BatchPipeline
from .prefetch import Prefetcher
from .recipe import AuthorsStageLR, progress_rule, set_group_lr, warmup_note, warmup_position
from .report import summary_table
from .stage_plan import StagePlan, steps_per_epoch
from .tasks import ClassificationTask, Task

__all__ = ["Trainer", "TrainError", "make_schedule", "run"]

# how the global batch is split over processes and micro-batches: a resume may change them (Trainer._check_layout)
LAYOUT_KEYS = {("train", "batch_size"), ("train", "accum_steps"), ("train", "global_batch")}
# what a run directory holds and --overwrite removes
RUN_FILES = (".pt", ".pth", ".jsonl", ".csv", ".json", ".png", ".txt")


def make_schedule(cfg: Config, model: nn.Module) -> Schedule:
    """The curriculum of ``cfg`` with sizes the model takes."""
    c = cfg.curriculum
    return curriculum_plan(c.name, epochs=cfg.train.epochs, final_size=cfg.data.final_size, model=model, m0=c.m0,
                           size_multiple=c.size_multiple, min_size=c.min_size, **c.schedule_options())


def _amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None  # CPU autocast is slower than fp32 on most CPUs without AMX
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode == "fp16" and device.type != "cuda":
        raise TrainError("train.amp=fp16 needs a CUDA device (use bf16 on CPU)")
    return torch.bfloat16 if mode == "bf16" else torch.float16


class Trainer:
    """One training run. ``Trainer(cfg, run_dir=..., resume=...).fit()`` returns the final metrics row.

    ``model``: your own module instead of ``cfg.model`` (it must take ``[N, 3, B, B]`` images and return logits
    for the dataset's classes); or ``model_factory``: a function of the dataset's number of classes that returns
    it (called once the data is known, after seeding). ``task``: what is optimised and evaluated (default:
    classification)."""

    def __init__(self, cfg: Config, run_dir: str | None = None, resume: str | None = None, overwrite: bool = False,
                 model: nn.Module | None = None, task: Task | None = None,
                 model_factory: Callable[[int], nn.Module] | None = None):
        self.cfg = cfg
        self._setup_process()
        resume_ckpt = self._load_resume(resume) if resume else None
        self.run_dir = self._prepare_run_dir(run_dir, resume, overwrite)
        try:
            self._build(resume_ckpt, model, model_factory, task)
        except BaseException:
            self._remove_run_dir_if_unused()  # bad data or model: no empty run directory left behind
            raise

    def _build(self, resume_ckpt: dict | None, model: nn.Module | None,
               model_factory: Callable[[int], nn.Module] | None, task: Task | None) -> None:
        """Data, model, plan, optimisation and pipeline of the run, once its directory is known."""
        cfg = self.cfg
        self.data = self._build_data()
        if model is None:
            model = model_factory(self.data.num_classes) if model_factory else create_model(cfg, self.data.num_classes)
        self.model = model
        self._build_plan()
        self.model.to(self.device)
        if cfg.train.channels_last:
            self.model.to(memory_format=torch.channels_last)
        switch_input_size(self.model, resume_ckpt["input_size"] if resume_ckpt else self.schedule.stages[0].size)
        self._build_optimisation()
        self.pipeline = BatchPipeline.from_config(cfg, self.data.mean, self.data.std, self.data.num_classes,
                                                  self.device)
        if self.compile_mode == "model+pipeline":
            self.pipeline.compile_float_path(lambda f: compile_module(f, cfg.train.compile_backend))
        self.task: Task = task if task is not None else ClassificationTask(self.pipeline.soft_targets,
                                                                            cfg.aug.smoothing)
        self.start_epoch, self.wall_offset, self.skipped = 0, 0.0, set()
        if resume_ckpt:
            self._restore(resume_ckpt)
        else:
            seed_all(cfg.train.seed + 1000003 * self.info.rank + 1)  # distinct augmentation streams per rank
        self.ddp_model = self._wrap()
        self.step_model = self._compiled(self.ddp_model)
        self.log = MetricsLog(self.run_dir, keep_epochs=self.start_epoch, tensorboard=cfg.train.tensorboard) \
            if self.info.main else None
        if self.info.main:
            write_text_atomic(os.path.join(self.run_dir, "config.yaml"), config_yaml(cfg))
            write_text_atomic(os.path.join(self.run_dir, "schedule.json"), json.dumps(self._schedule_record(), indent=1))

    # ----- setup

    def _setup_process(self) -> None:
        t = self.cfg.train
        self.info: DistInfo = init_distributed(t.device, t.distributed, t.dist_backend)
        self.device = resolve_device(t.device, self.info)
        self.comm = Collectives(self.info, self.device)  # every collective of the run (engine/collectives.py)
        if t.threads:
            torch.set_num_threads(t.threads)
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        use_cudnn_autotuning(self.device, t.deterministic)
        self.compile_mode = resolve_compile(t.compile, self.device)
        # the next batch's device path while the step runs: on CUDA by default; on the CPU it would only reorder
        self.prefetcher = Prefetcher(self.device, 1 if t.prefetch == "on" or (t.prefetch == "auto" and
                                                                            self.device.type == "cuda") else 0)
        seed_all(t.seed)  # identical model init on every rank

    def _prepare_run_dir(self, run_dir: str | None, resume: str | None, overwrite: bool) -> str:
        if run_dir is None and resume:
            run_dir = resume if os.path.isdir(resume) else os.path.dirname(os.path.abspath(resume))
        if run_dir is None:
            name = self.cfg.train.name or f"{self.cfg.model.name.replace(':', '.')}-" \
                                          f"{os.path.basename(self.cfg.curriculum.name)}"
            run_dir = os.path.join(self.cfg.train.output, name)
        exists = os.path.exists(os.path.join(run_dir, "metrics.jsonl"))
        self.made_run_dir = False
        if exists and not resume and not overwrite:  # checked on every rank, so all ranks stop together
            if os.path.exists(os.path.join(run_dir, "last.pt")):
                raise TrainError(f"run directory {run_dir} already holds a run; pass --resume {run_dir} to continue "
                                 "it, --overwrite to replace it, or another --name")
            raise TrainError(f"run directory {run_dir} holds a run that stopped before its first checkpoint; pass "
                             "--overwrite to start it again, or another --name")
        if self.info.main:
            if exists and overwrite and not resume:
                for f in os.listdir(run_dir):
                    if f.endswith(RUN_FILES) and f != "trial_schedule.yaml":
                        os.unlink(os.path.join(run_dir, f))
            self.made_run_dir = not os.path.isdir(run_dir)
            os.makedirs(run_dir, exist_ok=True)
        self.comm.barrier()  # the directory exists before any rank writes into it
        return run_dir

    def _remove_run_dir_if_unused(self) -> None:
        if self.info.main and self.made_run_dir:
            try:
                os.rmdir(self.run_dir)  # only while empty: nothing of the run is ever removed
            except OSError:
                pass

    def _build_data(self) -> Datasets:
        d = self.cfg.data
        if d.download:  # rank 0 downloads, the others then read its copy (ranks downloading at once would race)
            failed = None
            if self.info.main:
                try:
                    download_cifar10(d.root)
                except DataError as e:
                    failed = str(e)
            failed = self.comm.gather(failed)[0]  # every rank stops, with rank 0's reason, rather than wait
            if failed:
                raise DataError(failed)
        data = build_datasets(d.dataset, d.root, d.final_size, scale=d.scale, ratio=d.ratio, hflip=d.hflip,
                              interpolation=d.interpolation, crop_pct=d.crop_pct, train_subset=d.train_subset,
                              val_subset=d.val_subset, val_split=d.val_split, split_seed=d.split_seed,
                              shards=d.shards, val_shards=d.val_shards)
        if d.device_cache:  # decoded once onto the device; batches are then cropped there (data/device_cache.py)
            data = cache_datasets(data, self.device, cache_size=d.cache_size, workers=d.workers,
                                  max_gib=d.cache_max_gib)
        self._loaders: dict[int, EpochLoader] = {}
        self.val_loader = build_val_loader(data.val, self.cfg.train.batch_size, self.info, workers=d.workers,
                                           pin_memory=self.device.type == "cuda")
        return data

    def _build_plan(self) -> None:
        cfg = self.cfg
        self.schedule = make_schedule(cfg, self.model)
        t = cfg.train
        self.accum = Accumulation(resolve_accum_steps(t.accum_steps, t.global_batch, t.batch_size, self.info.world))
        self.plan = StagePlan.build(self.schedule, t.batch_size, len(self.data.train), self.info.world,
                                    accum=self.accum.steps, progress=progress_rule(cfg, self.schedule))
        # predicted cost (the FLOP count also runs the model once at every size: a size it cannot take fails here)
        self.flops = flops_by_size(self.model, [s.size for s in self.schedule.stages] + [cfg.data.final_size])
        self.stage_costs, self.predicted_cost = stage_costs(self.schedule, self.flops)
        self.buffer_capacity = self._buffer_capacities()
        self._buffer: tuple[int, SampleReplayBuffer] | None = None  # (stage, its buffer) under replay_mode=authors

    def _buffer_capacities(self) -> dict[int, int]:
        """Stage index -> replay buffer capacity (loaded batches) of every stage that replays under
        ``curriculum.replay_mode: authors``; checked before anything trains."""
        c = self.cfg.curriculum
        if c.replay_mode != "authors":
            return {}
        out = {}
        for k, st in enumerate(self.schedule.stages):
            if st.replay == 1:
                continue
            cap = c.replay_buffer if not isinstance(c.replay_buffer, dict) else c.replay_buffer.get(st.size)
            if cap is None:
                raise TrainError(f"curriculum.replay_buffer gives no capacity for the stage at {st.size} px (replay "
                                 f"{st.replay}); sizes given: {sorted(c.replay_buffer)}")
            if self.plan.stage_batch[k] % st.replay:
                raise TrainError(f"replay_mode=authors loads batch/replay images per step: the stage at {st.size} px "
                                 f"has batch {self.plan.stage_batch[k]}, not a multiple of its replay {st.replay}")
            out[k] = cap
        return out

    def _stage_buffer(self, epoch: int) -> SampleReplayBuffer:
        """The stage's buffer: kept across its epochs, new at every stage (the authors restart per stage); a run
        resumed mid-stage starts it empty."""
        k = self.plan.stage_index(epoch)
        if self._buffer is None or self._buffer[0] != k:
            gen = torch.Generator().manual_seed(self.cfg.train.seed * 7919 + k * 131 + self.info.rank + 17)
            self._buffer = (k, SampleReplayBuffer(self.buffer_capacity[k], gen))
        return self._buffer[1]

    def _build_optimisation(self) -> None:
        o, cfg = self.cfg.optim, self.cfg
        global_batch = cfg.train.batch_size * self.info.world * self.accum.steps
        self.lr = o.lr if o.lr is not None else o.base_lr * global_batch / o.base_batch
        extra = {"betas": tuple(o.betas)} if o.betas is not None else {}
        extra.update({"eps": o.eps} if o.eps is not None else {})
        self.optimizer = create_optimizer_v2(self.model, o.opt, lr=self.lr, weight_decay=o.weight_decay,
                                             momentum=o.momentum, layer_decay=o.layer_decay, **extra,
                                             **optimizer_kernel_options(o.opt, o.fused, self.device))
        # positions are optimizer steps at the reference batch (the plan's lr_position); like the authors'
        # cosine_scheduler (ConvNeXt's utils.py, which EfficientTrain's main.py uses), the warm-up comes first and
        # the decay spans the rest, reaching min_lr at the last step
        # (in epochs of ref_steps, so that timm's epoch-valued options such as decay_epochs keep their meaning)
        ref = self.plan.ref_steps
        total, warmup = self.plan.lr_total / ref, warmup_position(cfg, self.plan) / ref
        self.lr_scheduler, _ = create_scheduler_v2(
            self.optimizer, o.sched, num_epochs=max(total - warmup, 1e-9), warmup_epochs=warmup,
            warmup_lr=o.warmup_lr, warmup_prefix=True, min_lr=o.min_lr, step_on_epochs=False, updates_per_epoch=ref)
        # optim.lr_mode=authors: the authors' per-stage restarts instead of the one cosine above
        self.stage_lr = AuthorsStageLR.build(cfg, self.plan, self.lr) if o.lr_mode == "authors" else None
        self.amp_dtype = _amp_dtype(cfg.train.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.ema = ModelEmaV3(self.model, decay=cfg.train.ema_decay, use_warmup=cfg.train.ema_warmup) \
            if cfg.train.ema else None

    def _train_loader(self, batch: int) -> EpochLoader:
        """The training loader for a per-process batch size (one per distinct stage batch, built once)."""
        if batch not in self._loaders:
            d = self.cfg.data
            kind = "device" if d.device_cache else d.loader  # device: batches made from the cached images
            loader = LOADERS[kind](self.data.train, batch, self.info, workers=d.workers, seed=self.cfg.train.seed,
                                   pin_memory=self.device.type == "cuda", **d.loader_options())
            expected = steps_per_epoch(len(self.data.train), batch, self.info.world)
            if len(loader) != expected:  # the plan's learning-rate and magnitude positions assume these steps
                raise TrainError(f"data.loader={d.loader} gives {len(loader)} batches of {batch} per epoch, the "
                                 f"stage plan expects {expected}")
            self._loaders[batch] = loader
        return self._loaders[batch]

    def _wrap(self) -> nn.Module:
        return self.comm.wrap(self.model)

    def _compiled(self, model: nn.Module) -> nn.Module:
        """What the step calls: ``model``, compiled unless ``train.compile`` is off. Called again whenever the DDP
        wrapper is rebuilt."""
        return model if self.compile_mode == "off" else compile_module(model, self.cfg.train.compile_backend)

    def _schedule_record(self) -> dict[str, Any]:
        rec = self.schedule.to_dict()
        for st, cost, planned in zip(rec["stages"], self.stage_costs, self.plan.describe()):
            st.update(flops_per_image=cost.flops_per_image, relative_flops=cost.relative_flops, compute=cost.compute,
                      baseline_epochs=self.schedule.baseline, batch=planned["batch"],
                      steps_per_epoch=planned["steps_per_epoch"])
        rec["predicted_cost"] = self.predicted_cost
        rec["primary_metric"] = self.task.primary  # what etrain plot draws
        rec["steps_per_epoch"] = self.plan.ref_steps  # at train.batch_size (the learning-rate schedule's epoch)
        rec["total_steps"] = self.plan.total_steps
        rec["accum_steps"] = self.plan.accum  # micro-batches per optimizer step
        rec["progress"] = progress_rule(self.cfg, self.schedule)  # what the learning rate advances with
        return rec

    # ----- checkpoints

    def _load_resume(self, path: str) -> dict[str, Any]:
        ck = ckpt_io.load(path)
        if ck["fingerprint"] != ckpt_io.fingerprint(trajectory_dict(self.cfg)):
            # A checkpoint of an older version lacks the keys added since; validated again they take their
            # defaults (which keep the old behaviour), so only a real difference refuses the resume.
            try:
                theirs = trajectory_dict(config_from_dict(ck["config"]))
            except ConfigError as e:
                raise TrainError(f"checkpoint {path} was written by a configuration this version cannot read: "
                                 f"{e}") from None
            ours = trajectory_dict(self.cfg)
            # how the global batch is split may change when the checkpoint says what it was (_check_layout)
            free = LAYOUT_KEYS if "global_batches" in ck else set()
            diff = [f"{s}.{k}: {theirs.get(s, {}).get(k)!r} -> {v!r}" for s, sec in ours.items()
                    for k, v in sec.items() if theirs.get(s, {}).get(k) != v and (s, k) not in free]
            if diff:
                raise TrainError(f"checkpoint {path} was written by a different configuration; differences: "
                                 + "; ".join(diff))
        if "global_batches" not in ck and ck["world_size"] != self.info.world:  # older checkpoints
            raise TrainError(f"checkpoint {path} was written by {ck['world_size']} processes, this run has "
                             f"{self.info.world}: a checkpoint of this version older than elastic resume needs the "
                             f"same world size")
        return ck

    def _global_batches(self) -> list[int]:
        """Each stage's global batch: per-process batch x processes x accumulated micro-batches."""
        return [b * self.info.world * self.plan.accum for b in self.plan.stage_batch]

    def _check_layout(self, ck: dict[str, Any]) -> None:
        """Elastic resume: another number of processes (or per-process batch) may continue a run when every stage's
        global batch is the same; the global data order (data/order.py) then gives the same global batches."""
        theirs, ours = ck.get("global_batches"), self._global_batches()
        if theirs is not None and list(theirs) != ours:
            t = self.cfg.train
            raise TrainError(f"checkpoint was trained with global batches {list(theirs)} (per stage), this run gives "
                             f"{ours} ({t.batch_size} per process x {self.info.world} processes x "
                             f"{self.plan.accum} accumulation steps): set train.accum_steps (or train.global_batch "
                             f"with train.accum_steps=auto) to keep the global batch")

    def _state(self, epoch: int, stage: int) -> dict[str, Any]:
        rngs = self.comm.gather(ckpt_io.rng_state())  # every rank's random streams
        return {
            "format": ckpt_io.FORMAT,
            "fingerprint": ckpt_io.fingerprint(trajectory_dict(self.cfg)),
            "config": config_to_dict(self.cfg),
            "epoch": epoch,
            "stage": stage,
            "global_step": self.plan.epoch_start[epoch],
            "input_size": current_input_size(self.model) or self.schedule.size_at(max(epoch - 1, 0)),
            "schedule": self.schedule.to_dict(),  # a YAML schedule's content (its path is in the fingerprint)
            "world_size": self.info.world,
            "global_batches": self._global_batches(),
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
        # checkpoints older than the stored schedule cannot be checked: their configuration matched, which is
        # what the check was before
        if "schedule" in ck and ck["schedule"] != self.schedule.to_dict():
            raise TrainError(f"the curriculum {self.cfg.curriculum.name!r} gives other stages than when the checkpoint "
                             "was written (was its schedule file edited?); an exact resume needs the same schedule")
        try:
            self.model.load_state_dict(ck["model"])
        except RuntimeError as e:  # e.g. an `etrain mae` checkpoint resumed with `etrain train`, or the reverse
            raise TrainError(f"the checkpoint's model does not fit this run's model (resume a run with the command "
                             f"that started it): {str(e).splitlines()[0]}") from e
        self.optimizer.load_state_dict(ck["optimizer"])
        self.lr_scheduler.load_state_dict(ck["lr_scheduler"])
        if self.ema is not None:
            if ck["ema"] is None:
                raise TrainError("checkpoint has no EMA weights but train.ema is on")
            self.ema.module.load_state_dict(ck["ema"])
        self.scaler.load_state_dict(ck["scaler"])
        self._check_layout(ck)
        self.start_epoch = int(ck["epoch"])
        if ck["world_size"] == self.info.world:
            ckpt_io.set_rng_state(ck["rng"][self.info.rank])
        else:  # elastic: the same global batches follow; the augmentation streams start anew per rank
            seed_all(self.cfg.train.seed + 1000003 * self.info.rank + 1 + 7919 * self.start_epoch)
            if self.info.main:
                print(f"resuming a {ck['world_size']}-process run on {self.info.world} processes at epoch "
                      f"{self.start_epoch} (global batches {self._global_batches()}): the data order and global "
                      f"batches continue exactly, the augmentation random streams are drawn anew", flush=True)
        self.wall_offset = float(ck["wall_time"])
        self.skipped = set(ck["skipped"])

    # ----- one epoch

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _note_skipped(self, bad: list[str]) -> None:
        for p in bad:
            if p not in self.skipped:
                self.skipped.add(p)
                warnings.warn(f"skipping unreadable image {p}", RuntimeWarning, stacklevel=2)

    def _switch_stage(self, epoch: int) -> None:
        replaced = switch_input_size(self.model, self.plan.stage(epoch).size, self.optimizer,
                                     [self.ema.module] if self.ema else [])
        if replaced and self.info.enabled:
            self.ddp_model = self._wrap()  # DDP holds the old Parameter objects
            self.step_model = self._compiled(self.ddp_model)

    def _set_lr(self, epoch: int, done: int) -> None:
        """timm's scheduler value at the plan's position, times the stage's batch factor (linear scaling rule)."""
        self.lr_scheduler.step_update(num_updates=self.plan.lr_position(epoch, done))
        if self.stage_lr is not None:
            set_group_lr(self.optimizer, self.stage_lr.value(self.plan, epoch, done))
        factor = self.plan.lr_factor(epoch)
        if factor != 1.0:
            for group in self.optimizer.param_groups:
                group["lr"] *= factor

    def _step(self, x: torch.Tensor, y: torch.Tensor, step: int, j: int = 0) -> torch.Tensor:
        """Forward and backward of micro-batch ``j`` of the epoch; after the last micro-batch of an optimizer step
        (every one without accumulation), the update. Returns the loss as a device scalar, unread: nothing here
        waits for the device (the loss is read at the log interval, :class:`~.loss_monitor.DeviceLossMonitor`)."""
        with self.accum.sync(self.ddp_model, j):  # DDP: gradients all-reduced at the step's last micro-batch only
            with self._autocast():
                loss = self.task.loss(self.step_model, x, y)
            if self.accum.micro(j) == 0:
                self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(self.accum.scale_loss(loss)).backward()
        if self.accum.is_last(j):
            self._update(step)
        return loss.detach()

    def _update(self, step: int) -> None:
        if self.cfg.optim.clip_grad is not None:
            self.scaler.unscale_(self.optimizer)
            dispatch_clip_grad(self.model.parameters(), self.cfg.optim.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)  # a step whose first micro-batch is skipped starts clean
        if self.ema is not None:
            self.ema.update(self.model, step=step + 1)

    def _sync(self) -> None:
        """Wait for the device (a deliberate host sync: epoch ends and compiling steps only)."""
        if self.device.type == "cuda":
            with host_sync_allowed(self.device):
                torch.cuda.synchronize(self.device)

    def train_one_epoch(self, epoch: int) -> dict[str, Any]:
        cfg, plan, accum = self.cfg, self.plan, self.accum
        st = plan.stage(epoch)
        authors = plan.stage_index(epoch) in self.buffer_capacity  # replay_mode=authors and this stage replays
        loader = self._train_loader(plan.batch(epoch) // st.replay if authors else plan.batch(epoch))
        self.ddp_model.train()
        loader.set_epoch(epoch)
        self._set_lr(epoch, 0)  # a new stage's batch factor applies from its first step
        monitor = DeviceLossMonitor(self.device, cfg.train.log_interval)
        clock = CompileClock(self.compile_mode != "off")
        # replay order: seeded per (epoch, rank) like the loader, so a resumed run replays identically
        replay_gen = torch.Generator().manual_seed(cfg.train.seed * 7919 + epoch * 131 + self.info.rank)
        if authors:  # one fresh load of batch/replay images per micro-batch, the rest drawn from the buffer
            buffer = self._stage_buffer(epoch)
            batches = ((b, True) for b in itertools.islice(loader, plan.epoch_steps[epoch] * accum.steps))
        else:
            batches = replay_micro_batches(loader, st.replay, plan.epoch_steps[epoch], accum.steps, replay_gen)
        m = lr = 0.0
        title = f"epoch {epoch + 1}/{plan.epochs} B={st.size}" + (f" replay {st.replay}" if st.replay > 1 else "")
        bar = tqdm(total=plan.epoch_steps[epoch], desc=title, dynamic_ncols=True, leave=False, mininterval=1.0,
                   file=sys.stderr, disable=not (cfg.train.progress and self.info.main))
        t_start, cpu_start = time.perf_counter(), time.process_time()
        loaded = [0]
        compiling: dict[int, int] = {}  # micro-batch -> its images, for those whose step compiled (time not counted)

        def prepare(indexed):
            """Micro-batch j's host side and its device path (prefetched: on a side stream on CUDA). Batches keep
            their size (unreadable images are replaced in the loader), so no rank ever waits for another here."""
            j, ((x, y, bad), fresh) = indexed
            i = j // accum.steps  # the optimizer step
            if fresh:
                self._note_skipped(bad)
                loaded[0] += x.shape[0]
            m = plan.magnitude(epoch, i)
            clock.start()  # the batch path may be compiled too
            if authors:  # (the buffer copies to pinned host memory and draws back without a host sync)
                x, y = self.pipeline.augment(x, y, st.size, m)
                buffer.add(x, y)
                rx, ry = buffer.draw(plan.batch(epoch) - x.shape[0])
                x, y = self.pipeline.mix(torch.cat([x, rx.to(x.device, x.dtype)]), torch.cat([y, ry.to(y.device)]))
            else:
                x, y = self.pipeline.train(x, y, st.size, m)
            if clock.stop(self._sync):
                compiling[j] = x.shape[0]
            return j, i, m, (to_channels_last(x) if cfg.train.channels_last else x), y

        with recompile_room(len(self.schedule.stages)):
            for j, i, m_j, x, y in self.prefetcher.run(enumerate(batches), prepare):
                step = plan.global_step(epoch, i)
                m = m_j
                clock.start()
                monitor.add(self._step(x, y, step, j), x.shape[0], step)
                if clock.stop(self._sync):
                    compiling[j] = x.shape[0]
                if not accum.is_last(j):
                    continue
                self._set_lr(epoch, i + 1)
                lr = max(g["lr"] for g in self.optimizer.param_groups)  # the unscaled rate under layer decay
                if monitor.due():
                    with host_sync_allowed(self.device):
                        monitor.check()
                    el = time.perf_counter() - t_start
                    bar.set_postfix_str(f"{monitor.images * self.info.world / el:.0f} img/s, loss "
                                        f"{monitor.last_mean:.3f}, B {st.size}, m {m:.2f}, lr {lr:.2e}", refresh=False)
                bar.update(1)
        with host_sync_allowed(self.device):
            loss_sum = monitor.check()
        self._sync()
        train_time = time.perf_counter() - t_start - clock.seconds
        cpu_time = time.process_time() - cpu_start - clock.cpu_seconds  # all threads of this process
        bar.close()
        self.lr_scheduler.step(epoch + 1)
        # img/s and the summary's time per image: the images of steps whose time counts (compiling steps' do not)
        stats = self.comm.sum([loss_sum, monitor.images, loaded[0], monitor.images - sum(compiling.values())])
        return {"train_loss": float(stats[0] / max(stats[1], 1)), "train_images": int(stats[1]),
                "timed_images": int(stats[3]), "loaded_images": int(stats[2]), "replay": st.replay,
                "batch": plan.batch(epoch) * self.info.world * accum.steps,
                "train_time": train_time, "train_cpu_time": cpu_time, "img_s": float(stats[3]) / max(train_time, 1e-9),
                "compile_time": clock.seconds, "compilations": clock.compilations, "magnitude": m, "lr": lr}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, size: int | None = None) -> dict[str, float]:
        """The task's metrics on the validation set (final-size images, brought to ``size`` like training inputs)."""
        model.eval()
        sums = torch.zeros(self.task.eval_width, dtype=torch.float64)  # a rank's shard may be empty
        for x, y, bad in self.val_loader:
            self._note_skipped(bad)
            if x.shape[0] == 0:
                continue
            x, y = self.pipeline.eval(x, y, size)
            with self._autocast():
                sums += self.task.eval_sums(model, x, y)
        return self.task.eval_metrics(self.comm.sum_tensor(sums))

    def _eval_all(self, size: int) -> dict[str, Any]:
        final = self.cfg.data.final_size
        row = self.evaluate(resized_view(self.model, final))
        if self.ema is not None:
            row.update({f"ema_{k}": v for k, v in self.evaluate(resized_view(self.ema.module, final)).items()})
        if size < final and self.cfg.train.eval_at_stage_size:
            row[f"{self.task.primary}_at_B"] = self.evaluate(self.model, size)[self.task.primary]
        return row

    # ----- the loop

    def fit(self) -> dict[str, Any]:
        self.t0 = time.perf_counter()
        plan = self.plan
        if self.info.main:
            print(schedule_table(self.schedule, self.flops), flush=True)
            steps = "/".join(str(p["steps_per_epoch"]) for p in plan.describe())
            batches = "/".join(str(b * self.info.world * plan.accum) for b in plan.stage_batch)
            accum = f" ({plan.accum} micro-batches per step)" if plan.accum > 1 else ""
            print(f"run directory: {self.run_dir}; steps/epoch {steps}, global batch {batches} (per stage){accum}, "
                  f"lr {self.lr:.3g} at {self.cfg.train.batch_size * self.info.world * plan.accum}, "
                  f"{warmup_note(self.cfg, plan)}, progress by {progress_rule(self.cfg, self.schedule)}, "
                  f"device {self.device}", flush=True)
        train_total = sum(r["train_time"] for r in (self.log.rows if self.log else []))
        last: dict[str, Any] = self.log.rows[-1] if self.log and self.log.rows else {}
        for epoch in range(self.start_epoch, plan.epochs):
            size = plan.stage(epoch).size
            if plan.is_stage_start(epoch) or current_input_size(self.model) not in (None, size):
                self._switch_stage(epoch)
                if epoch > 0 and epoch != self.start_epoch:
                    self._save(f"stage{plan.stage_index(epoch)}.pt", epoch, plan.stage_index(epoch))
            row: dict[str, Any] = {"epoch": epoch + 1, "stage": plan.stage_index(epoch), "size": size}
            row.update(self.train_one_epoch(epoch))
            # per-rank BatchNorm statistics (DDP does not broadcast buffers per step) made one before eval and save
            self.comm.average_buffers(self.model, *([self.ema.module] if self.ema else []))
            train_total += row["train_time"]
            row.update(self._eval_all(size))
            row["train_time_total"] = train_total
            row["wall_time"] = self.wall_offset + (time.perf_counter() - self.t0)
            self.skipped = self.comm.union(self.skipped)  # every rank met the corrupt files of its own shard
            row["skipped_images"] = len(self.skipped)
            if self.log is not None:
                self.log.append(row)
                print(_epoch_line(row, self.task.primary), flush=True)
            self._save("last.pt", epoch + 1, plan.stage_index(epoch))
            last = row
        if self.info.main:
            self._finish()
        return last

    def _finish(self) -> None:
        stages = self._schedule_record()["stages"]
        table = summary_table(self.log.rows, stages, self.predicted_cost, self.cfg.data.final_size,
                              metric=self.task.primary, higher_is_better=getattr(self.task, "higher_is_better", True))
        print(table, flush=True)
        write_text_atomic(os.path.join(self.run_dir, "summary.txt"), table + "\n")
        last = self.log.rows[-1] if self.log.rows else {}
        summary = {"final": last, "predicted_cost": self.predicted_cost, "run_dir": self.run_dir,
                   "curriculum": self.schedule.name, "model": self.cfg.model.name}
        write_text_atomic(os.path.join(self.run_dir, "summary.json"), json.dumps(summary, indent=1))
        self.log.close()


def _epoch_line(r: dict[str, Any], primary: str = "top1") -> str:
    def fmt(v: float) -> str:
        return f"{v:.2f}%" if primary.startswith("top") else f"{v:.4f}"

    parts = [f"epoch {r['epoch']}", f"B {r['size']}", f"loss {r['train_loss']:.4f}", f"{primary} {fmt(r[primary])}"]
    if f"ema_{primary}" in r:
        parts.append(f"ema {fmt(r[f'ema_{primary}'])}")
    if f"{primary}_at_B" in r:
        parts.append(f"{primary}@B {fmt(r[f'{primary}_at_B'])}")
    parts += [f"{r['img_s']:.0f} img/s", f"train {r['train_time']:.1f}s", f"wall {r['wall_time']:.1f}s"]
    if r.get("compile_time"):
        parts.append(f"compile {r['compile_time']:.1f}s")
    return " | ".join(parts)


def run(cfg: Config, run_dir: str | None = None, resume: str | None = None, overwrite: bool = False,
        model: nn.Module | None = None) -> dict:
    """Train ``cfg`` to the end (a torchrun process group, if any, is closed afterwards)."""
    trainer = Trainer(cfg, run_dir=run_dir, resume=resume, overwrite=overwrite, model=model)
    try:
        return trainer.fit()
    finally:
        trainer.comm.close()
