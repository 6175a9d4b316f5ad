"""The curriculum in timm's training loop: the recipe's lines against timm's public loader, Mixup, optimizer,
scheduler and EMA; the wrapper around timm's own train.py (scripts/timm_train_efficienttrain.py).

timm's train.py is not in the timm wheel: the end-to-end test runs when ETRAIN_TIMM_TRAIN_PY names one (a
pytorch-image-models checkout's train.py), and is skipped otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys

import pytest
import timm
import torch
from timm.data import Mixup, create_dataset, create_loader, resolve_data_config
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3

from _etrain_helpers import REPO, etrain_env, make_image_folder
from efficienttrain_ext.curriculum import plan
from efficienttrain_ext.errors import TrainError
from efficienttrain_ext.integrations import CurriculumBatch

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(REPO, "scripts", "timm_train_efficienttrain.py")
TRAIN_PY = os.environ.get("ETRAIN_TIMM_TRAIN_PY")


def _script():
    spec = importlib.util.spec_from_file_location("timm_train_efficienttrain", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("imgs") / "data", per_class=8, size=48)


def test_recipe_in_a_timm_loop(folder):
    """train.py's train_one_epoch, reduced to its lines that touch the batch, with the recipe's additions."""
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", num_classes=2, img_size=64, depth=1, embed_dim=32,
                              num_heads=2)
    data_config = resolve_data_config({"input_size": (3, 64, 64)}, model=model)
    # what train.py builds with --no-prefetcher --reprob 0 and no --aa: RandomResizedCrop, flip, ToTensor, Normalize
    loader = create_loader(create_dataset("", root=str(folder / "train"), is_training=True), input_size=(3, 64, 64),
                           batch_size=4, is_training=True, use_prefetcher=False, re_prob=0.0, color_jitter=None,
                           mean=data_config["mean"], std=data_config["std"], num_workers=0)
    x, _ = next(iter(loader))
    assert x.dtype == torch.float32 and x.min() < 0  # normalised floats

    # + EfficientTrain (the recipe): the schedule, the batch step, the size switch
    schedule = plan("efficienttrain", epochs=5, final_size=64, model=model)
    step = CurriculumBatch(schedule, data_config["mean"], data_config["std"], input_mean=data_config["mean"],
                           input_std=data_config["std"])
    # the loader's floats are its uint8 pixels, exactly: normalising the recovered pixels gives the floats back
    m = torch.tensor(data_config["mean"]).view(1, 3, 1, 1)
    s = torch.tensor(data_config["std"]).view(1, 3, 1, 1)
    assert ((step.to_uint8(x).float() / 255 - m) / s - x).abs().max() < 1e-5  # one level off would be > 0.017

    step.switch(model, 0)
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)
    lr_scheduler, num_epochs = create_scheduler_v2(optimizer, "cosine", num_epochs=schedule.epochs, warmup_epochs=0,
                                                   updates_per_epoch=len(loader))
    model_ema = ModelEmaV3(model, decay=0.9)
    mixup_fn = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=2)
    loss_fn = SoftTargetCrossEntropy()
    seen = []
    num_updates = 0
    for epoch in range(num_epochs):
        step.switch(model, epoch, optimizer, [model_ema.module])  # + EfficientTrain
        model.train()
        for batch_idx, (input, target) in enumerate(step.wrap(loader, epoch)):  # + EfficientTrain: step.wrap
            input, target = mixup_fn(input, target)
            seen.append((epoch, input.shape[-1], round(step.magnitude, 6)))
            loss = loss_fn(model(input), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            num_updates += 1
            model_ema.update(model)
            lr_scheduler.step_update(num_updates=num_updates)
        lr_scheduler.step(epoch + 1)
        assert model_ema.module.pos_embed.shape == model.pos_embed.shape
    n = len(loader)
    assert seen == [(e, schedule.size_at(e), round(9 * (e + i / n) / 5, 6)) for e in range(5) for i in range(n)]
    assert [s.size for s in schedule.stages] == [48, 64]


def test_wrapper_takes_over_augmentation_arguments():
    cur = _script().TimmCurriculum(argparse.Namespace(et_curriculum="efficienttrain++", et_m0=9.0,
                                                      et_randaugment_impl="batched"))
    args = argparse.Namespace(aa="rand-m9-mstd0.5-inc1", reprob=0.25, remode="pixel", recount=1, color_jitter=0.4,
                              no_prefetcher=False, model="resnet18", num_classes=10, model_kwargs={}, epochs=30,
                              img_size=None, input_size=None, aug_splits=0, jsd_loss=False)
    args = cur.take_over(args)
    assert args.aa is None and args.reprob == 0.0 and args.color_jitter is None and args.no_prefetcher
    assert cur.policy == "rand-m9-mstd0.5-inc1" and cur.erasing["probability"] == 0.25
    assert cur.final_size == 224 and args.epochs == cur.schedule.epochs > 30  # efficienttrain++ runs longer
    with pytest.raises(TrainError, match="AugMix"):
        cur.take_over(argparse.Namespace(**{**vars(args), "aug_splits": 3}))


@pytest.mark.skipif(not TRAIN_PY, reason="set ETRAIN_TIMM_TRAIN_PY to a pytorch-image-models train.py")
def test_wrapper_runs_timm_train_py_and_resumes(folder, tmp_path):
    record = tmp_path / "sizes.txt"

    def run(*extra, stop=0):
        env = etrain_env({"PYTHONPATH": os.pathsep.join([REPO, HERE]), "ETRAIN_RECORD": str(record),
                          "ETRAIN_STOP_AFTER": str(stop)})
        cmd = [sys.executable, SCRIPT, "--et-train-py", TRAIN_PY, "--et-import", "timm_recording_model", "--",
               "--data-dir", str(folder), "--train-split", "train", "--val-split", "val", "--model", "recording_deit",
               "--num-classes", "2", "--img-size", "96", "--batch-size", "4", "--epochs", "5", "--device", "cpu",
               "--workers", "0", "--output", str(tmp_path), "--experiment", "run", "--aa", "rand-m9-mstd0.5-inc1",
               "--reprob", "0.25", "--mixup", "0.8", "--cutmix", "1.0", "--model-ema", "--warmup-epochs", "0",
               *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    steps = 16 // 4  # per epoch
    out = run(stop=2 * steps)  # interrupted at the first step of epoch 3 (Ctrl-C: train.py stops cleanly)
    assert "EfficientTrain: efficienttrain, 5 epochs" in out
    first = record.read_text().split("\n")[:-1]
    assert first == ["64 torch.float32"] * (2 * steps)
    out = run("--resume", str(tmp_path / "run" / "last.pth.tar"))
    lines = record.read_text().split("\n")[:-1]
    # resumed in stage 0 (epochs 1-3 at 64): epoch 3 at 64, epoch 4 at 80, epoch 5 at 96
    assert lines[2 * steps:] == [f"{s} torch.float32" for s in [64] * steps + [80] * steps + [96] * steps]
    assert "epoch 2: B=64, m from 3.60" in out
