"""Training configuration: typed sections with the paper's recipe as defaults, YAML presets, dotted overrides.

Precedence: defaults < ``--config FILE.yaml`` (may ``include:`` another preset) < ``--set a.b=value`` and the
convenience flags of ``etrain train``. The whole configuration is validated when it is loaded (types, ranges,
choices, RandAugment policy strings, options that the chosen curriculum does not take), so a typo fails before
anything is built; the resolved configuration is written to ``RUN/config.yaml``.

The sections are pydantic models (unknown keys are errors; assignments are validated too).
"""

from __future__ import annotations

import copy
import inspect
import os
import re
from typing import Annotated, Any, Literal, Mapping, Union

import yaml
from timm.optim import get_optimizer_class
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from .augment.policy import parse_policy
from .curriculum.schedules import CURRICULA, ETPP_SIZES
from .data.build import DATASETS
from .errors import ConfigError

__all__ = ["Config", "ConfigError", "ModelConfig", "DataConfig", "CurriculumConfig", "ProgressiveOptions",
           "EfficientTrainPPOptions", "OptimConfig", "AugConfig", "TrainConfig", "MaeConfig", "FinetuneConfig",
           "load_config", "apply_overrides", "config_to_dict", "config_from_dict", "merge_config_dicts",
           "trajectory_dict", "config_yaml", "OPERATIONAL_KEYS", "LEGACY_DEFAULTS", "with_legacy_defaults",
           "optimizer_options"]



def _not_bool(v: Any) -> Any:
    # pydantic's lax mode takes true/false as 1/0; in a configuration that is always a mistake
    if isinstance(v, bool):
        raise ValueError(f"expected a number, got {v!r}")
    return v


def _yaml_off(v: Any) -> Any:
    # YAML 1.1 reads a bare off / on as false / true: they mean the choices "off" and (for compile) "model"
    return {False: "off", True: "on"}.get(v, v) if isinstance(v, bool) else v


def optimizer_options(opt: str) -> set[str] | None:
    """The keyword arguments of the optimizer class behind timm's name ``opt`` (None: timm's registry lacks it)."""
    try:
        cls = get_optimizer_class(opt.lower().removeprefix("lookahead_"), bind_defaults=False)
    except ValueError:
        return None
    return set(inspect.signature(cls).parameters)


def _at_least_one(v: Any, message: str) -> Any:
    """A per-stage value (one int, or a {size: int} map) whose every entry must be >= 1; ``message`` names it."""
    values = v.values() if isinstance(v, dict) else [v]
    if v is not None and any(x < 1 for x in values):
        raise ValueError(f"{message}, got {v}")
    return v


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]  # also takes "1e-3", which YAML 1.1 reads as a string


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    # a timm model name, or "package.module:factory" (a callable taking num_classes and returning an nn.Module)
    name: str = "resnet50"
    imports: list[str] = Field(default_factory=list)  # modules imported first (e.g. ones that register timm models)
    pretrained_file: str | None = None  # local weights (nothing is downloaded)
    drop_path: Float | None = Field(0.1, ge=0.0, lt=1.0)
    kwargs: dict[str, Any] = Field(default_factory=dict)  # extra model arguments (e.g. depth for tiny tests)


class DataConfig(_Section):
    dataset: Literal[DATASETS] = "auto"  # auto: from root (train/ folders -> imagefolder, IDX files -> fashion_mnist)
    root: str | None = None  # default for fashion_mnist: /usr/share/datasets/fashion-mnist
    final_size: Int = Field(224, ge=1)
    # evaluation: None = the authors' rule (a plain resize to v x v at v >= 384, else resize to v / 0.875 and
    # centre-crop; LeapLabTHU/EfficientTrain datasets.py); a number: resize to v / crop_pct and centre-crop at any v
    crop_pct: Float | None = Field(None, gt=0.0, le=1.0)
    scale: list[Float] = Field(default_factory=lambda: [0.08, 1.0])
    ratio: list[Float] = Field(default_factory=lambda: [3 / 4, 4 / 3])
    hflip: Float = Field(0.5, ge=0.0, le=1.0)
    interpolation: Literal["bilinear", "bicubic"] = "bicubic"
    workers: Int = Field(4, ge=0)
    loader: Literal["torch", "dali"] = "torch"  # how training batches are read and decoded (engine/loaders.py)
    dali_device: Literal["auto", "cpu", "mixed"] = "auto"  # dali decoding: mixed = nvJPEG (auto: when on CUDA)
    shards: str | None = None  # wds: training tar shards, e.g. /data/train-{000000..000009}.tar
    val_shards: str | None = None  # wds: validation tar shards (or data.val_split)
    train_subset: Int | None = Field(None, ge=1)
    val_subset: Int | None = Field(None, ge=1)
    val_split: Float | None = Field(None, gt=0.0, lt=1.0)  # hold out this part of train/ (seeded, class-stratified)
    split_seed: Int = 0
    download: bool = False  # cifar10: where data.root holds no data, download the pickle directory into it
    # the GPU-resident data path (data/device_cache.py, docs/data.md): decoded uint8 images on the training device,
    # RandomResizedCrop + flip batched there; no loader workers
    device_cache: bool = False
    cache_size: Int | None = Field(None, ge=1)  # device_cache: store training images as S x S (short side, centre)
    cache_max_gib: Float = Field(4.0, gt=0.0)  # device_cache: refuse sets larger than this (and half the free GPU)

    @field_validator("scale", "ratio")
    @classmethod
    def _range(cls, v: list[float], info) -> list[float]:
        if len(v) != 2 or not 0 < v[0] <= v[1] or (info.field_name == "scale" and v[1] > 1.0):
            bound = "0 < lo <= hi <= 1" if info.field_name == "scale" else "0 < lo <= hi"
            raise ValueError(f"must be [lo, hi] with {bound}, got {v}")
        return v

    @model_validator(mode="after")
    def _source(self) -> "DataConfig":
        if self.dataset == "wds" and not self.shards:
            raise ValueError("data.dataset=wds needs data.shards, a pattern such as /data/train-{000000..000009}.tar "
                             "(etrain shards IMAGEFOLDER OUT_DIR writes them)")
        if self.shards and self.dataset not in ("wds", "auto"):
            raise ValueError(f"data.shards applies to data.dataset=wds, not {self.dataset!r}")
        if self.val_shards and not self.shards:
            raise ValueError("data.val_shards needs data.shards (the training shards)")
        if self.loader == "dali" and self.dataset in ("fashion_mnist", "cifar10"):
            raise ValueError("data.loader=dali decodes image files: use an ImageFolder or tar shards (data.dataset="
                             f"imagefolder or wds), or data.loader=torch for {self.dataset}")
        if self.device_cache and self.loader == "dali":
            raise ValueError("data.device_cache keeps decoded images on the device and crops them there: it replaces "
                             "the loader, so use it with data.loader=torch (the default), not dali")
        if self.cache_size is not None and not self.device_cache:
            raise ValueError("data.cache_size applies to data.device_cache=true")
        if self.download and self.dataset != "cifar10":
            raise ValueError(f"data.download applies to data.dataset=cifar10, not {self.dataset!r} (ImageFolders, "
                             "shards and the Fashion-MNIST package are not downloaded)")
        if self.loader != "dali" and self.dali_device != "auto":
            raise ValueError(f"data.dali_device applies to data.loader=dali, not {self.loader!r}")
        return self

    def loader_options(self) -> dict[str, Any]:
        """The keyword arguments of this loader's factory beyond the common ones (engine/loaders.py)."""
        return {"device": self.dali_device} if self.loader == "dali" else {}


class ProgressiveOptions(_Section):
    """``curriculum: progressive``: the size ramps linearly from ``min_scale * v`` to v, then stays at v for the last
    ``finetune_fraction`` of training."""

    min_scale: Float = Field(160.0 / 224.0, gt=0.0, le=1.0)
    finetune_fraction: Float = Field(0.2, ge=0.0, lt=1.0)


class EfficientTrainPPOptions(_Section):
    """``curriculum: efficienttrain++``: the reference size list (default: from the model's family), and the budget
    at which ``model.drop_path`` holds: the authors' scripts train with drop path ``rate * budget / 200``
    (LeapLabTHU/EfficientTrain, _ET_pp_main_*.py); null keeps ``model.drop_path`` at every budget."""

    family: Literal[tuple(sorted(ETPP_SIZES))] | None = None
    drop_path_budget: Float | None = Field(200.0, gt=0.0)


ReplaySpec = Union[Int, dict[int, Int]]
BatchScaleSpec = Union[Float, Literal["pixels"], dict[int, Float]]


class CurriculumConfig(_Section):
    name: str = "efficienttrain"  # efficienttrain | efficienttrain++ | progressive | none | FILE.yaml
    m0: Float = Field(9.0, ge=0.0)
    size_multiple: Int | None = Field(None, ge=1)  # declare the model's size step (default: probed)
    min_size: Int | None = Field(None, ge=1)  # declare the model's smallest input size (default: probed)
    # any curriculum: EfficientTrain++'s replay buffer and larger batches below the final size
    replay: ReplaySpec | None = None  # r, or {size: r}
    # reaugment: each loaded batch is trained on r times, augmented afresh each time (curriculum/replay.py
    # replay_batches); authors: EfficientTrain++'s released buffer (LeapLabTHU/EfficientTrain engine_buffer.py):
    # every step loads batch/r images, augments them once and adds them to a buffer of the last `replay_buffer`
    # loaded batches, then trains on them plus (r-1)/r of a batch drawn from the buffer with replacement
    replay_mode: Literal["reaugment", "authors"] = "reaugment"
    replay_buffer: ReplaySpec | None = None  # authors mode: capacity in loaded batches, or {size: capacity}
    batch_scale: BatchScaleSpec | None = None  # k, {size: k}, or "pixels" ((v/B)^2)
    # ablations (paper Table 13): the size ramp, the RandAugment ramp, how B is reached, a fixed low-pass filter
    size_ramp: bool = True
    magnitude_ramp: bool = True
    resize: Literal["lowfreq", "bilinear", "bicubic", "area"] = "lowfreq"
    filter: str | None = None  # "lowpass:r" / "highpass:r": a circular filter of radius r on every training image
    # what the learning-rate schedule and the RandAugment ramp advance with (engine/stage_plan.py): images trained,
    # or compute ((B/v)^2 per image); auto: compute for runs that stand for a smaller budget (efficienttrain++)
    progress: Literal["auto", "images", "compute"] = "auto"
    progressive: ProgressiveOptions = Field(default_factory=ProgressiveOptions)
    efficienttrain_pp: EfficientTrainPPOptions = Field(default_factory=EfficientTrainPPOptions)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in CURRICULA and not v.endswith((".yaml", ".yml")):
            raise ValueError(f"unknown curriculum {v!r}; choose from {sorted(CURRICULA)} or a schedule .yaml file")
        return v

    @field_validator("replay")
    @classmethod
    def _replay(cls, v):
        return _at_least_one(v, "replay factors must be integers >= 1")

    @field_validator("replay_buffer")
    @classmethod
    def _replay_buffer(cls, v):
        return _at_least_one(v, "buffer capacities must be integers >= 1 (loaded batches)")

    @model_validator(mode="after")
    def _replay_mode(self) -> "CurriculumConfig":
        if self.replay_buffer is not None and self.replay_mode != "authors":
            raise ValueError("curriculum.replay_buffer applies to curriculum.replay_mode=authors")
        if self.replay_mode == "authors" and self.replay is not None and self.replay_buffer is None:
            raise ValueError("curriculum.replay_mode=authors needs curriculum.replay_buffer, the buffer's capacity "
                             "in loaded batches (the authors': {96: 1920, 160: 256} with replay {96: 4, 160: 2})")
        return self

    @field_validator("batch_scale")
    @classmethod
    def _batch_scale(cls, v):
        values = v.values() if isinstance(v, dict) else [] if isinstance(v, str) or v is None else [v]
        if any(not k > 0 for k in values):
            raise ValueError(f"batch factors must be > 0, got {v}")
        return v

    @field_validator("filter")
    @classmethod
    def _filter(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"(lowpass|highpass):[1-9][0-9]*", v):
            raise ValueError(f"must look like lowpass:R or highpass:R with an integer radius R >= 1, got {v!r}")
        return v

    def schedule_options(self) -> dict[str, Any]:
        """The options of :func:`~efficienttrain_ext.curriculum.build_schedule` this section sets."""
        opts: dict[str, Any] = dict(replay=self.replay, batch_scale=self.batch_scale, size_ramp=self.size_ramp,
                                    magnitude_ramp=self.magnitude_ramp)
        if self.name == "progressive":
            opts.update(self.progressive.model_dump())
        if self.name == "efficienttrain++":
            opts["family"] = self.efficienttrain_pp.family
        return opts


class OptimConfig(_Section):
    opt: str = "adamw"
    lr: Float | None = Field(None, gt=0.0)  # None: base_lr * global batch / base_batch
    base_lr: Float = Field(4e-3, gt=0.0)
    base_batch: Int = Field(4096, ge=1)
    weight_decay: Float = Field(0.05, ge=0.0)
    momentum: Float = Field(0.9, ge=0.0, lt=1.0)
    clip_grad: Float | None = Field(5.0, gt=0.0)
    sched: str = "cosine"
    # epochs of training (the paper's 20, whatever the run's length; MAE pre-training 40, IN-22K 5); None: 20/300 of
    # the run (this project's rule before the recipe-fidelity work, kept so older runs can resume)
    warmup_epochs: Float | None = Field(20.0, ge=0.0)
    # a share of the learning-rate schedule instead (EfficientTrain++ for DeiT: 0.2); replaces warmup_epochs
    warmup_fraction: Float | None = Field(None, ge=0.0, lt=1.0)
    # a run no longer than its warm-up (a quick trial of a 20-epoch-warm-up recipe) warms up over this share of the run
    # instead; None: over the whole run, peaking at the last step (this project's rule before issue 27)
    short_run_warmup: Float | None = Field(0.2, gt=0.0, lt=1.0)
    # continuous: one warm-up and one cosine over the whole run; authors: efficienttrain++ as the authors' scripts run
    # it, a new warm-up and cosine at every stage (engine/recipe.py AuthorsStageLR)
    lr_mode: Literal["continuous", "authors"] = "continuous"
    warmup_lr: Float = Field(1e-6, ge=0.0)
    min_lr: Float = Field(1e-6, ge=0.0)
    layer_decay: Float | None = Field(None, gt=0.0, le=1.0)  # layer-wise LR decay (fine-tuning)
    betas: list[Float] | None = None  # Adam-family (beta1, beta2); None: the optimizer's default
    eps: Float | None = Field(None, gt=0.0)  # Adam-family/LAMB epsilon; None: the optimizer's default
    # auto: the fused kernel on CUDA where the optimizer has one (AdamW, Adam, SGD), else foreach on CUDA; on the CPU
    # torch's default (its per-tensor loop). fused / foreach / off force one (off: the per-tensor loop)
    fused: Annotated[Literal["auto", "fused", "foreach", "off"], BeforeValidator(_yaml_off)] = "auto"

    @model_validator(mode="after")
    def _kernel_choice(self) -> "OptimConfig":
        if self.fused in ("fused", "foreach"):
            takes = optimizer_options(self.opt)
            if takes is None:
                raise ValueError(f"optim.opt: timm has no optimizer {self.opt!r}")
            if self.fused not in takes:
                raise ValueError(f"optim.fused={self.fused}: timm's optimizer {self.opt!r} has no {self.fused} "
                                 "implementation (use auto or off)")
        return self

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (len(v) != 2 or not all(0.0 <= b < 1.0 for b in v)):
            raise ValueError(f"must be [beta1, beta2] with 0 <= beta < 1, got {v}")
        return v


class AugConfig(_Section):
    randaugment: str | None = "rand-m9-mstd0.5-inc1"  # m is driven by the curriculum; None disables
    # batched: efficienttrain_ext.augment (per-sample ops in one kernel call, bit-identical to timm's PIL ops);
    # timm: timm's per-image PIL transform
    randaugment_impl: Literal["batched", "timm"] = "batched"
    mixup: Float = Field(0.8, ge=0.0)
    cutmix: Float = Field(1.0, ge=0.0)
    mixup_prob: Float = Field(1.0, ge=0.0, le=1.0)
    mixup_switch_prob: Float = Field(0.5, ge=0.0, le=1.0)
    smoothing: Float = Field(0.1, ge=0.0, lt=1.0)
    reprob: Float = Field(0.25, ge=0.0, le=1.0)
    remode: Literal["pixel", "rand", "const"] = "pixel"
    # before_crop: erase the full-size image, then bring it to B (EfficientTrain's order: its loader erases at 224,
    # the crop runs afterwards, LeapLabTHU/EfficientTrain datasets.py + engine.py); after_crop: erase the B x B
    # image (EfficientTrain++'s released order, datasets_buffer.py; this project's order before issue 20)
    erasing_order: Literal["before_crop", "after_crop"] = "before_crop"

    @field_validator("randaugment")
    @classmethod
    def _policy(cls, v: str | None) -> str | None:
        if v:
            parse_policy(v)  # ValueError with the reason
        return v or None


class TrainConfig(_Section):
    epochs: Int = Field(300, ge=1)
    batch_size: Int = Field(128, ge=1)  # per process
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # auto: bf16/fp16 on CUDA, off on CPU
    ema: bool = True
    ema_decay: Float = Field(0.9999, gt=0.0, lt=1.0)
    # timm's EMA warm-up (decay 1 - (1 + step)^-2/3) leaves ~0.9995 at the end of a 300-epoch run at batch 4096;
    # the recipe's decay holds from the first step without it (the authors use timm's ModelEma, which has none)
    ema_warmup: bool = False
    # gradient accumulation: micro-batches of batch_size per optimizer step, or auto (global_batch / (batch_size x
    # processes)); the learning rate, replay and batch_scale refer to the global batch batch_size x processes x steps
    accum_steps: Union[Int, Literal["auto"]] = Field(1)
    global_batch: Int | None = Field(None, ge=1)  # with accum_steps=auto: the batch to reach (the paper's 4096)
    seed: Int = 0
    deterministic: bool = False
    device: str = "auto"
    output: str = "runs"
    name: str | None = None
    progress: bool = True
    tensorboard: bool = False
    eval_at_stage_size: bool = True
    threads: Int | None = Field(None, ge=1)
    log_interval: Int = Field(50, ge=1)  # steps between host reads of the loss (and its non-finite check)
    # torch.compile: off | model | model+pipeline (also the batch path's float/crop/normalise); auto: model on CUDA,
    # off on the CPU. One compilation per distinct stage size (static shapes); its time is reported apart
    compile: Annotated[Literal["auto", "off", "model", "model+pipeline"],
                       BeforeValidator(lambda v: "model" if _yaml_off(v) == "on" else _yaml_off(v))] = "auto"
    compile_backend: str = "inductor"  # torch.compile's backend (aot_eager: no code generation, for tests)
    # the next batch's copy / RandAugment / crop on a CUDA side stream while the step runs; auto: on CUDA only (on the
    # CPU it only changes the order of random draws); on: also on the CPU (tests)
    prefetch: Annotated[Literal["auto", "off", "on"], BeforeValidator(_yaml_off)] = "auto"
    channels_last: bool = False  # NHWC memory format for model and inputs (CNNs on CUDA: tensor-core convolutions)
    # auto: a process group when torchrun starts several ranks; always: one even for a single process (one GPU then
    # runs every collective and DDP of a multi-GPU run)
    distributed: Literal["auto", "always"] = "auto"
    # the process group's backend: auto (nccl on GPUs, gloo on the CPU) or any init_process_group string, e.g. gloo,
    # "cuda:gloo" (a CUDA-only default group like NCCL's, for tests), "cpu:gloo,cuda:nccl"
    dist_backend: str = "auto"

    @field_validator("dist_backend")
    @classmethod
    def _dist_backend(cls, v: str) -> str:
        if not re.fullmatch(r"auto|nccl|gloo|mpi|ucc|((cpu|cuda|xpu):\w+)(,(cpu|cuda|xpu):\w+)*", v):
            raise ValueError(f"must be auto, a backend name (nccl, gloo) or device:backend pairs such as "
                             f"'cpu:gloo,cuda:nccl', got {v!r}")
        return v

    @field_validator("accum_steps")
    @classmethod
    def _accum(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"must be an integer >= 1 or auto, got {v!r}")
        return v

    @model_validator(mode="after")
    def _global_batch(self) -> "TrainConfig":
        if self.accum_steps == "auto" and self.global_batch is None:
            raise ValueError("train.accum_steps=auto needs train.global_batch (e.g. 4096, the paper's batch)")
        if self.global_batch is not None and self.global_batch % self.batch_size:
            raise ValueError(f"train.global_batch {self.global_batch} is not a multiple of train.batch_size "
                             f"{self.batch_size}")
        return self

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", v):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {v!r}")
        return v


class MaeConfig(_Section):
    """``etrain mae``: masked-autoencoder pre-training (efficienttrain_ext.models.mae; other commands ignore it)."""

    mask_ratio: Float = Field(0.75, gt=0.0, lt=1.0)  # share of each image's patches hidden from the encoder
    decoder_depth: Int | None = Field(None, ge=1)  # None: 8 blocks for ViT-B and wider, scaled down below
    decoder_dim: Int | None = Field(None, ge=4)  # None: 512 for ViT-B and wider, scaled down below
    decoder_heads: Int | None = Field(None, ge=1)  # None: decoder_dim / 32
    decoder_mlp_ratio: Float = Field(4.0, gt=0.0)
    norm_pix_loss: bool = True  # targets: each patch normalised by its own mean and variance
    pos_embed: Literal["sincos", "learned"] = "sincos"  # MAE's fixed 2-D sin-cos tables, or learned ones
    vis_images: Int = Field(6, ge=0)  # validation images in reconstruction.png (0: no figure)

    @model_validator(mode="after")
    def _heads(self) -> "MaeConfig":
        if self.decoder_dim is not None and self.decoder_heads is not None and self.decoder_dim % self.decoder_heads:
            raise ValueError(f"mae.decoder_dim {self.decoder_dim} is not divisible by mae.decoder_heads "
                             f"{self.decoder_heads}")
        return self


class FinetuneConfig(_Section):
    """``etrain finetune``: where the initial weights come from and what is trained (other commands ignore it)."""

    source: str | None = None  # run directory or checkpoint of etrain train/mae, or a timm state dict file
    weights: Literal["auto", "model", "ema"] = "auto"  # auto: the EMA weights when the checkpoint has them
    linear_probe: bool = False  # train only a new classifier on the frozen backbone
    probe_bn: bool = True  # linear probe: an affine-free BatchNorm before the classifier (MAE's linear probing)
    reinit: list[str] = Field(default_factory=list)  # glob patterns of further keys that start fresh (not loaded)
    # the new classifier's weights ~ trunc_normal(std), bias 0 (fine-tuning, not the probe); None: the model's own
    # initialisation. An etrain mae source defaults to 2e-5 (MAE's main_finetune.py)
    head_std: float | None = Field(default=None, gt=0)


class Config(_Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    curriculum: CurriculumConfig = Field(default_factory=CurriculumConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    aug: AugConfig = Field(default_factory=AugConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    mae: MaeConfig = Field(default_factory=MaeConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)

    @model_validator(mode="after")
    def _consistent(self) -> "Config":
        c = self.curriculum
        if c.name != "progressive" and c.progressive != ProgressiveOptions():
            raise ValueError(f"curriculum.progressive applies to the progressive curriculum only, not {c.name!r}")
        if c.name != "efficienttrain++" and c.efficienttrain_pp != EfficientTrainPPOptions():
            raise ValueError(f"curriculum.efficienttrain_pp applies to efficienttrain++ only, not {c.name!r}")
        if self.optim.lr_mode == "authors" and c.name != "efficienttrain++":
            raise ValueError(f"optim.lr_mode=authors restarts the cosine at every efficienttrain++ stage (the "
                             f"authors' per-stage processes); the curriculum is {c.name!r}")
        if self.train.amp == "fp16" and self.train.device == "cpu":
            raise ValueError("train.amp=fp16 needs a CUDA device (use bf16 on the CPU)")
        if self.data.dali_device == "mixed" and self.train.device == "cpu":
            raise ValueError("data.dali_device=mixed decodes on the GPU, but train.device is cpu (use cpu or auto)")
        return self


# keys that do not change what is trained: they may differ between a run and its resume
OPERATIONAL_KEYS = {
    ("data", "root"), ("data", "shards"), ("data", "val_shards"), ("data", "workers"), ("data", "cache_max_gib"),
    ("data", "download"),
    ("train", "device"), ("train", "output"), ("train", "name"),
    ("train", "progress"), ("train", "tensorboard"), ("train", "threads"), ("train", "log_interval"),
    ("train", "compile"), ("train", "compile_backend"), ("train", "channels_last"), ("train", "prefetch"),
    ("optim", "fused"), ("train", "distributed"), ("train", "dist_backend"),
}

# keys added with a default that is not what older runs did: an older checkpoint's configuration gets the old
# behaviour (engine/checkpoint.py load applies this), so a resumed run continues as it started
LEGACY_DEFAULTS = {
    ("aug", "erasing_order"): "after_crop",  # erasing ran at size B before issue 20
    ("optim", "short_run_warmup"): None,  # a run shorter than its warm-up warmed up throughout before issue 27
}


def with_legacy_defaults(d: Mapping[str, Any]) -> dict[str, Any]:
    """A stored configuration with :data:`LEGACY_DEFAULTS` filled in where its section lacks the key."""
    out = copy.deepcopy(dict(d))
    for (section, key), value in LEGACY_DEFAULTS.items():
        if isinstance(out.get(section), Mapping) and key not in out[section]:
            out[section] = {**out[section], key: value}
    return out


# keys that were replaced, with what replaced them
_MOVED = {
    ("curriculum", "options"): "the curriculum options are typed keys now: curriculum.replay, curriculum.batch_scale, "
                               "curriculum.progressive.min_scale / .finetune_fraction",
    ("curriculum", "family"): "curriculum.family is curriculum.efficienttrain_pp.family now",
    ("train", "debug_kill_at_step"): "train.debug_kill_at_step was a test hook and is gone",
}


def _format(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "literal[", "dict[")))
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        # our own checks name the value already
        shown = "" if err["type"] in ("missing", "extra_forbidden", "value_error") \
            or isinstance(got, (dict, BaseModel)) else f" (got {got!r})"
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{loc or 'config'}: {msg}{shown}")
    return "; ".join(dict.fromkeys(parts))


def _validated(d: Mapping[str, Any]) -> Config:
    for section, values in d.items():
        for key in values if isinstance(values, Mapping) else ():
            if (section, key) in _MOVED:
                raise ConfigError(f"{section}.{key}: {_MOVED[section, key]}")
    try:
        return Config.model_validate(d)
    except ValidationError as e:
        raise ConfigError(_format(e)) from None


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return cfg.model_dump(mode="python")


def trajectory_dict(cfg: Config) -> dict[str, Any]:
    """The configuration without the keys that do not change what is trained (:data:`OPERATIONAL_KEYS`)."""
    d = config_to_dict(cfg)
    for section, key in OPERATIONAL_KEYS:
        d[section].pop(key, None)
    return d


def _merge(model: type[BaseModel], base: dict[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` merged into ``base``: sections (sub-models) merge key by key, any other value is replaced whole."""
    out = dict(base)
    for key, value in new.items():
        field = model.model_fields.get(key)
        sub = field.annotation if field is not None else None
        if isinstance(sub, type) and issubclass(sub, BaseModel) and isinstance(value, Mapping) \
                and isinstance(out.get(key), Mapping):
            out[key] = _merge(sub, out[key], value)
        else:
            out[key] = value
    return out


def merge_config_dicts(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Two nested configuration mappings merged section by section (``new`` wins); not validated."""
    return _merge(Config, copy.deepcopy(dict(base)), new)


def config_from_dict(d: Mapping[str, Any], base: Config | None = None) -> Config:
    """Merge a nested mapping into ``base`` (defaults if None) and validate the result."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"a configuration must be a mapping of sections, got {type(d).__name__}")
    return _validated(_merge(Config, config_to_dict(base) if base is not None else {}, d))


def _read_yaml(path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    path = os.path.abspath(path)
    if path in seen:
        raise ConfigError(f"config include cycle: {' -> '.join(seen + (path,))}")
    try:
        with open(path) as f:
            d = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} is not valid YAML: {e}") from e
    if not isinstance(d, dict):
        raise ConfigError(f"config {path} must be a mapping")
    inc = d.pop("include", None)
    if inc is None:
        return d
    return _merge(Config, _read_yaml(os.path.join(os.path.dirname(path), inc), seen + (path,)), d)


def load_config(path: str | None = None, overrides: list[str] | None = None,
                base: Mapping[str, Any] | None = None) -> Config:
    """Defaults, then ``base`` (a command's own defaults, e.g. ``etrain mae``'s), then the YAML file ``path``, then
    ``section.key=value`` overrides; validated once at the end."""
    d = _merge(Config, copy.deepcopy(dict(base or {})), _read_yaml(path) if path else {})
    return _validated(_merge(Config, {}, _override_dict(d, overrides or [])))


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """``cfg`` with ``section.key=value`` strings applied (values parsed as YAML: ``1e-3``, ``null``, ``[0.5, 1]``);
    ``section.sub.key=value`` sets a key of a sub-section or of a mapping (``model.kwargs.depth=2``)."""
    return _validated(_override_dict(config_to_dict(cfg), overrides))


def _override_dict(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    d = copy.deepcopy(d)
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: cannot parse value: {e}") from e
        *path, last = key.strip().split(".")
        node, model = d, Config
        for part in path:  # into sections and sub-sections; one level into a mapping field (model.kwargs.depth)
            field = model.model_fields.get(part) if model is not None else None
            if model is not None and field is None:
                raise ConfigError(f"override {item!r}: unknown key {part!r}"
                                  + (f"; keys: {sorted(model.model_fields)}" if model is not Config else
                                     f"; sections: {sorted(Config.model_fields)}"))
            sub = field.annotation if field is not None else None
            model = sub if isinstance(sub, type) and issubclass(sub, BaseModel) else None
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
            node[part] = child = dict(child)
            node = child
        node[last] = value
    return d


def config_yaml(cfg: Config) -> str:
    """The configuration as YAML text (what ``RUN/config.yaml`` holds; ``load_config`` reads it back)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
