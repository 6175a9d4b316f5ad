"""Training configuration: dataclasses with the paper's recipe as defaults, YAML presets, dotted overrides.

Precedence: dataclass defaults < ``--config FILE.yaml`` (may ``include:`` another preset) < ``--set a.b=value``
and the convenience flags of ``etrain train``. The resolved configuration is written to ``RUN/config.yaml``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

__all__ = ["Config", "ConfigError", "load_config", "apply_overrides", "config_to_dict", "config_from_dict",
           "trajectory_dict"]


class ConfigError(ValueError):
    """Unknown keys or values of the wrong type in a configuration."""


@dataclass
class ModelConfig:
    name: str = "resnet50"
    pretrained_file: str | None = None  # local weights (nothing is downloaded)
    drop_path: float | None = 0.1
    kwargs: dict = field(default_factory=dict)  # extra timm.create_model arguments (e.g. depth for tiny tests)


@dataclass
class DataConfig:
    dataset: str = "fashion_mnist"  # fashion_mnist | imagefolder
    root: str | None = None  # default for fashion_mnist: /usr/share/datasets/fashion-mnist
    final_size: int = 224
    crop_pct: float = 0.875
    scale: list = field(default_factory=lambda: [0.08, 1.0])
    ratio: list = field(default_factory=lambda: [3 / 4, 4 / 3])
    hflip: float = 0.5
    interpolation: str = "bicubic"
    workers: int = 4
    train_subset: int | None = None
    val_subset: int | None = None


@dataclass
class CurriculumConfig:
    name: str = "efficienttrain"  # efficienttrain | efficienttrain++ | progressive | none | FILE.yaml
    m0: float = 9.0
    family: str | None = None  # efficienttrain++ size list: cnn | convnext | deit (default: from the model)
    size_multiple: int | None = None  # force sizes to multiples of this (default: the model's own rule)
    # e.g. progressive: {min_scale: 0.5, finetune_fraction: 0.2}; any curriculum: {replay: 2} or {replay: {96: 4}}
    options: dict = field(default_factory=dict)


@dataclass
class OptimConfig:
    opt: str = "adamw"
    lr: float | None = None  # None: base_lr * global batch / base_batch
    base_lr: float = 4e-3
    base_batch: int = 4096
    weight_decay: float = 0.05
    momentum: float = 0.9
    clip_grad: float | None = 5.0
    sched: str = "cosine"
    warmup_epochs: float | None = None  # None: 20/300 of the run
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6


@dataclass
class AugConfig:
    randaugment: str | None = "rand-m9-mstd0.5-inc1"  # m is driven by the curriculum; None disables
    # batched: efficienttrain_ext.augment (per-sample ops in one kernel call, bit-identical to timm's PIL ops);
    # timm: timm's per-image PIL transform (TimmBatchRandAugment)
    randaugment_impl: str = "batched"
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1
    reprob: float = 0.25
    remode: str = "pixel"


@dataclass
class TrainConfig:
    epochs: int = 300
    batch_size: int = 128  # per process
    amp: str = "auto"  # auto (fp16/bf16 on CUDA, off on CPU) | off | bf16 | fp16
    ema: bool = True
    ema_decay: float = 0.9999
    ema_warmup: bool = True
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    output: str = "runs"
    name: str | None = None
    progress: bool = True
    tensorboard: bool = False
    eval_at_stage_size: bool = True
    threads: int | None = None
    debug_kill_at_step: int | None = None  # test hook: hard-exit (os._exit) before this global step


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# keys that do not change what is trained: they may differ between a run and its resume
OPERATIONAL_KEYS = {
    ("data", "root"), ("data", "workers"), ("train", "device"), ("train", "output"), ("train", "name"),
    ("train", "progress"), ("train", "tensorboard"), ("train", "threads"), ("train", "debug_kill_at_step"),
}


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def trajectory_dict(cfg: Config) -> dict[str, Any]:
    d = config_to_dict(cfg)
    for section, key in OPERATIONAL_KEYS:
        d[section].pop(key, None)
    return d


def _check_type(section: str, f: dataclasses.Field, value: Any) -> Any:
    name = f"{section}.{f.name}"
    default = getattr(Config(), section).__dict__[f.name]
    t = str(f.type)
    if value is None:
        if "None" in t:
            return None
        raise ConfigError(f"{name} cannot be null")
    if t.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true/false, got {value!r}")
        return value
    if t.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return value
    if t.startswith("float"):
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads 1e-3 without a dot as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if t.startswith("str"):
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    if isinstance(default, list) and not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name} must be a list, got {value!r}")
    if isinstance(default, dict) and not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a mapping, got {value!r}")
    return list(value) if isinstance(value, tuple) else value


def config_from_dict(d: Mapping[str, Any], base: Config | None = None) -> Config:
    """Merge a nested mapping into ``base`` (defaults if None), rejecting unknown keys and wrong types."""
    cfg = base if base is not None else Config()
    for section, values in d.items():
        if section not in Config.__dataclass_fields__:
            raise ConfigError(f"unknown config section {section!r}; sections: {list(Config.__dataclass_fields__)}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"config section {section!r} must be a mapping")
        obj = getattr(cfg, section)
        fields = {f.name: f for f in dataclasses.fields(obj)}
        for key, value in values.items():
            if key not in fields:
                raise ConfigError(f"unknown config key {section}.{key}; keys: {sorted(fields)}")
            setattr(obj, key, _check_type(section, fields[key], value))
    return cfg


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
    merged = _read_yaml(os.path.join(os.path.dirname(path), inc), seen + (path,))
    for section, values in d.items():
        if isinstance(values, Mapping) and isinstance(merged.get(section), Mapping):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return merged


def load_config(path: str | None = None, overrides: list[str] | None = None) -> Config:
    cfg = Config()
    if path:
        cfg = config_from_dict(_read_yaml(path), cfg)
    return apply_overrides(cfg, overrides or [])


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` strings; values are parsed as YAML (``1e-3``, ``null``, ``[0.5, 1]``)."""
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        section, name = key.strip().split(".", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: cannot parse value: {e}") from e
        if "." in name:  # one level into a dict field, e.g. model.kwargs.depth=2
            field_name, sub = name.split(".", 1)
            current = dict(getattr(getattr(cfg, section, None) or Config(), field_name, None) or {})
            current[sub] = value
            name, value = field_name, current
        cfg = config_from_dict({section: {name: value}}, cfg)
    return cfg


def save_config(cfg: Config, path: str) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
