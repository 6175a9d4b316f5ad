"""Downstream fine-tuning presets (configs/transfer/, the datasets of EfficientTrain++ Table 11) against their source.

EfficientTrain++'s text on Table 11's fine-tuning settings was not available to this project, and the authors'
repository (LeapLabTHU/EfficientTrain) has no transfer code. The presets are DeiT's transfer recipe as DeiT's first
author gave it for CIFAR-10/100 with AdamW: facebookresearch/deit issue #117 ("The hparams for CIFAR-10 and CIFAR-100
are: ..."), the same values in facebookresearch/dino issues #81 (CIFAR-10) and #144 (CIFAR-100). What those lists leave
out comes from DeiT's main.py / engine.py / datasets.py defaults, named next to each value. Flowers-102 and Stanford
Dogs have no recipe of their own in any source reached: they take the CIFAR recipe unchanged.
"""

from __future__ import annotations

import os

import pytest
import timm
import torch

from efficienttrain_ext import cli
from efficienttrain_ext.config import Config, apply_overrides, load_config
from efficienttrain_ext.engine.finetune import FINETUNE_DEFAULTS
from efficienttrain_ext.engine.model_factory import create_model
from efficienttrain_ext.engine.trainer import Trainer

from _etrain_helpers import make_image_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRANSFER = os.path.join(REPO, "configs", "transfer")
DATASETS = ["cifar10", "cifar100", "flowers102", "stanford_dogs"]  # EfficientTrain++ Table 11's four datasets

# (config key, value, source) -- one row per value the presets set
DEIT_117 = "facebookresearch/deit#117"
RECIPE = [
    ("data.final_size", 224, f"{DEIT_117} / dino#81: image size 224"),
    ("train.global_batch", 768, f"{DEIT_117}: global batch size 768"),
    ("optim.base_lr", 5e-6, f"{DEIT_117}: lr 5e-6 (DeiT main.py: lr x batch / 512)"),
    ("optim.base_batch", 512, "DeiT main.py: linear_scaled_lr = lr * batch_size * world_size / 512"),
    ("train.epochs", 1000, f"{DEIT_117}: epochs 1000"),
    ("optim.weight_decay", 0.05, f"{DEIT_117}: weight-decay 0.05"),
    ("optim.sched", "cosine", f"{DEIT_117}: sched cosine"),
    ("optim.opt", "adamw", f"{DEIT_117}: optimizer Adamw"),
    ("optim.warmup_epochs", 5, f"{DEIT_117}: warmup epochs 5"),
    ("optim.warmup_lr", 1e-6, f"{DEIT_117}: Warmup LR 1e-6"),
    ("optim.min_lr", 1e-5, f"{DEIT_117} (follow-up): min-lr left at DeiT main.py's default 1e-5"),
    ("aug.smoothing", 0.1, f"{DEIT_117}: Label smoothing 0.1"),
    ("aug.randaugment", "rand-m9-mstd0.5-inc1", f"{DEIT_117}: RandAugment rand-m9-mstd0.5-inc1"),
    ("aug.mixup", 0.8, f"{DEIT_117}: Mixup .8"),
    ("aug.cutmix", 1.0, f"{DEIT_117}: Cutmix 1.0"),
    ("model.drop_path", 0.1, f"{DEIT_117}: drop-path 0.1 (ResMLP-24); dino#81: Stoch. Depth 0.1 (ViT-B)"),
    ("aug.reprob", 0.25, "not in the AdamW lists: DeiT main.py --reprob 0.25 (deit#45's SGD recipe drops it)"),
    ("optim.clip_grad", None, "DeiT main.py --clip-grad None"),
    ("optim.layer_decay", None, "DeiT has no layer-wise decay (etrain finetune's MAE default 0.65 is switched off)"),
    ("train.amp", "auto", "DeiT engine.py trains under torch.cuda.amp.autocast"),
    ("train.ema", False, "DeiT main.py keeps an EMA but evaluates the model (engine.py evaluate(model))"),
    ("data.crop_pct", None, "DeiT datasets.py: resize to 224 / 0.875, centre-crop 224 (the authors' rule below 384)"),
    ("data.dataset", "imagefolder", "DeiT datasets.py normalises with ImageNet's mean/std (ImageFolder's here)"),
    ("curriculum.name", "none", "plain fine-tuning at the final size"),
]


def _value(cfg: Config, key: str):
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def _preset(ds: str) -> str:
    return os.path.join(TRANSFER, f"{ds}.yaml")


def test_presets_cover_table_11():
    assert sorted(f[:-5] for f in os.listdir(TRANSFER) if f.endswith(".yaml") and f != "deit_transfer.yaml") == \
        sorted(DATASETS)


@pytest.mark.parametrize("ds", DATASETS)
def test_preset_is_deits_transfer_recipe(ds):
    # loaded as etrain finetune loads it: its defaults (MAE's fine-tuning recipe) first, then the file
    cfg = load_config(_preset(ds), base=FINETUNE_DEFAULTS)
    wrong = [f"{key} = {_value(cfg, key)!r}, {source} gives {want!r}" for key, want, source in RECIPE
             if _value(cfg, key) != want]
    assert not wrong, "; ".join(wrong)
    # the learning rate at the recipe's batch: 5e-6 x 768 / 512 = 7.5e-6, the value dino#81 gives at 768
    assert cfg.optim.base_lr * cfg.train.global_batch / cfg.optim.base_batch == pytest.approx(7.5e-6)
    # 768 is reached on 1, 2, 4 or 8 processes of 96 (accumulation makes up the rest)
    assert (cfg.train.batch_size, cfg.train.accum_steps) == (96, "auto")
    assert all(768 % (96 * world) == 0 for world in (1, 2, 4, 8))
    assert cfg.finetune.linear_probe is False and cfg.data.root is None  # the user's --data-root


@pytest.mark.parametrize("ds", DATASETS)
def test_preset_builds_a_run_through_etrain_finetune(ds, tmp_path, monkeypatch):
    """The command in the preset's comment, through the real CLI up to the run (captured, not trained; resnet10t in
    place of DeiT-S: the recipe does not depend on the model); then a trainer from that configuration, shrunk to a
    tiny folder, has the recipe's optimizer and learning rate."""
    folder = make_image_folder(tmp_path / "data", per_class=8, size=24)
    command = next(line.lstrip("# ").split() for line in open(_preset(ds)) if line.startswith("#   etrain finetune"))
    assert command[:4] == ["etrain", "finetune", "-c", f"configs/transfer/{ds}.yaml"]
    source = str(tmp_path / "source.pth")  # a timm state dict: the CLI reads it before the (captured) run
    torch.save(timm.create_model("resnet10t", num_classes=10).state_dict(), source)
    argv = [{"CKPT": source, "deit_small_patch16_224": "resnet10t"}.get(a, a) for a in command[1:]]
    argv[argv.index("-c") + 1] = _preset(ds)
    argv[argv.index("--data-root") + 1] = str(folder)
    seen = []
    monkeypatch.setattr(cli, "run_finetune", lambda cfg, **kw: seen.append(cfg))
    assert cli.main(argv) == 0
    (cfg,) = seen
    assert cfg == apply_overrides(load_config(_preset(ds), base=FINETUNE_DEFAULTS),
                                  ["model.name=resnet10t", f"data.root={folder}", f"finetune.source={source}"])

    tiny = apply_overrides(cfg, ["data.final_size=32", "data.workers=0", "train.batch_size=4", "train.global_batch=8",
                                 "train.progress=false", f"train.output={tmp_path}"])
    trainer = Trainer(tiny, run_dir=str(tmp_path / "run"), model_factory=lambda n: create_model(tiny, n))
    assert trainer.accum.steps == 2 and trainer.lr == pytest.approx(5e-6 * 8 / 512)
    assert type(trainer.optimizer).__name__ == "AdamW" and trainer.ema is None
    assert {g["weight_decay"] for g in trainer.optimizer.param_groups} == {0.0, 0.05}  # no decay on norms/biases
    trainer.comm.close()
