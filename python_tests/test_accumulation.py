"""Gradient accumulation (train.accum_steps / train.global_batch): the same gradients and updates as one batch of the
global size, DDP's all-reduce once per optimizer step, exact resume, and replay / batch_scale per global batch."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from efficienttrain_ext.config import ConfigError, load_config
from efficienttrain_ext.curriculum.schedules import efficienttrain, with_batch_scale
from efficienttrain_ext.engine import StagePlan, Trainer
from efficienttrain_ext.engine.accumulation import Accumulation, replay_micro_batches, resolve_accum_steps
from efficienttrain_ext.engine.checkpoint import load as load_checkpoint
from efficienttrain_ext.errors import TrainError

from _etrain_helpers import (FMNIST, TINY_VIT, assert_same_run, make_image_folder, metrics, run_etrain, run_torchrun,
                             tiny_args)

needs_fmnist = pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")

# every input transform deterministic (no RandAugment, erasing, mixup, flips; the whole image), no drop path: two
# runs that group the same images differently into micro-batches must then train the same model
DETERMINISTIC = ["--set", "aug.randaugment=null", "--set", "aug.reprob=0", "--set", "aug.mixup=0", "--set",
                 "aug.cutmix=0", "--set", "data.hflip=0", "--set", "data.scale=[1, 1]", "--set", "data.ratio=[1, 1]",
                 "--set", "model.drop_path=0", "--set", "optim.warmup_epochs=0"]


def _trainer(tmp_path, name, batch, accum):
    folder = make_image_folder(tmp_path / "data", per_class=12, size=40)
    cfg = load_config(None, [
        "model.name=deit_tiny_patch16_224", "model.kwargs={depth: 2, embed_dim: 32, num_heads: 2}",
        "model.drop_path=0", "data.final_size=32", f"data.root={folder}", "data.workers=0", "curriculum.name=none",
        "train.epochs=2", f"train.batch_size={batch}", f"train.accum_steps={accum}", "train.progress=false",
        "optim.warmup_epochs=0", "aug.mixup=0", "aug.cutmix=0", f"train.output={tmp_path}"])
    return Trainer(cfg, run_dir=str(tmp_path / name))


def test_accumulated_gradients_equal_one_big_batch(tmp_path):
    big, acc = _trainer(tmp_path, "big", 8, 1), _trainer(tmp_path, "acc", 4, 2)
    assert acc.lr == big.lr  # the learning rate follows the global batch (8 both)
    for a, b in zip(big.model.state_dict().values(), acc.model.state_dict().values()):
        assert torch.equal(a, b)  # same seed: same initial weights
    grads = {"big": [], "acc": []}
    for name, t in (("big", big), ("acc", acc)):
        t.optimizer.register_step_pre_hook(
            lambda opt, args, kwargs, name=name, t=t: grads[name].append([p.grad.clone() for p in t.model.parameters()]))
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32, generator=gen), torch.randint(0, 2, (8,), generator=gen)
    big._step(x, y, step=0, j=0)
    acc._step(x[:4], y[:4], step=0, j=0)
    assert grads["acc"] == []  # no update after the first micro-batch
    acc._step(x[4:], y[4:], step=0, j=1)
    assert len(grads["big"]) == len(grads["acc"]) == 1
    for g_big, g_acc in zip(grads["big"][0], grads["acc"][0]):
        assert torch.allclose(g_big, g_acc, rtol=1e-5, atol=1e-7)
    assert any(g.abs().max() > 1e-4 for g in grads["big"][0])  # a real gradient, not zeros
    for a, b in zip(big.model.parameters(), acc.model.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in acc.model.parameters())  # the next step starts clean


def test_ddp_all_reduces_once_per_optimizer_step(tmp_path):
    # a one-process gloo group: DDP still runs its reducer, and a communication hook counts the all-reduces
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(nn.Linear(4, 2))
        calls = []

        def count(state, bucket):
            calls.append(1)
            fut = torch.futures.Future()
            fut.set_result(bucket.buffer())
            return fut

        ddp.register_comm_hook(None, count)
        accum = Accumulation(3)
        for j in range(6):  # two optimizer steps of three micro-batches
            with accum.sync(ddp, j):
                accum.scale_loss(ddp(torch.randn(2, 4)).sum()).backward()
        assert len(calls) == 2
        for j in range(2):  # without accumulation every backward all-reduces
            with Accumulation(1).sync(ddp, j):
                ddp(torch.randn(2, 4)).sum().backward()
        assert len(calls) == 4
    finally:
        dist.destroy_process_group()


@needs_fmnist
def test_ddp_accumulation_trains_like_the_bigger_batch(tmp_path):
    # 2 gloo ranks x 8 images vs 2 ranks x 4 images x 2 micro-batches: each rank's sampler gives both the same
    # images per optimizer step, so the trained weights agree (to float rounding)
    common = dict(size=32, epochs=2, subset=64, val=16, model=TINY_VIT)
    run_torchrun(tiny_args(tmp_path, "big", "--curriculum", "none", "--device", "cpu", *DETERMINISTIC, batch=8,
                           **common))
    run_torchrun(tiny_args(tmp_path, "acc", "--curriculum", "none", "--device", "cpu", *DETERMINISTIC,
                           "--set", "train.accum_steps=auto", "--set", "train.global_batch=16", batch=4, **common))
    big, acc = load_checkpoint(tmp_path / "big"), load_checkpoint(tmp_path / "acc")
    assert big["global_step"] == acc["global_step"] == 2 * (64 // 16)
    for k, v in big["model"].items():
        assert torch.allclose(v, acc["model"][k], rtol=1e-4, atol=1e-6), k
    for k, v in big["ema"].items():
        assert torch.allclose(v, acc["ema"][k], rtol=1e-4, atol=1e-6), k
    rows_big, rows_acc = metrics(tmp_path / "big"), metrics(tmp_path / "acc")
    assert [r["batch"] for r in rows_acc] == [r["batch"] for r in rows_big] == [16, 16]
    for a, b in zip(rows_big, rows_acc):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-12)


@needs_fmnist
def test_resume_with_accumulation_is_exact(tmp_path):
    # checkpoints fall between optimizer steps (an epoch holds whole steps): a run killed mid-accumulation resumes
    # from the last one; here the resume starts from the stage-1 checkpoint of a finished run
    args = tiny_args(tmp_path, "full", "--curriculum", "efficienttrain", "--set", "train.accum_steps=2",
                     "--set", "curriculum.replay=2", size=64, epochs=3, subset=64, val=16, batch=8, model=TINY_VIT)
    run_etrain(args)
    shutil.copytree(tmp_path / "full", tmp_path / "resumed")
    stage1 = load_checkpoint(tmp_path / "resumed" / "stage1.pt")
    assert 0 < stage1["epoch"] < 3
    shutil.copy(tmp_path / "resumed" / "stage1.pt", tmp_path / "resumed" / "last.pt")
    run_etrain(["train", "--resume", str(tmp_path / "resumed")])
    assert_same_run(tmp_path / "full", tmp_path / "resumed", 3)
    assert [r["train_images"] for r in metrics(tmp_path / "full")] == [64, 64, 64]  # 4 steps x 2 micro-batches x 8


def test_replay_reuses_whole_global_batches():
    loaded = []

    def loader():
        for i in range(100):
            loaded.append(i)
            yield i

    out = list(replay_micro_batches(loader(), replay=2, steps=4, accum=3, generator=torch.Generator().manual_seed(0)))
    assert len(out) == 4 * 3 and loaded[:6] == [0, 1, 2, 3, 4, 5] and len(loaded) <= 7
    steps = [tuple(b for b, _ in out[k:k + 3]) for k in range(0, 12, 3)]
    assert sorted(steps) == [(0, 1, 2), (0, 1, 2), (3, 4, 5), (3, 4, 5)]  # whole global batches, each used twice
    fresh = {}
    for b, f in out:
        fresh.setdefault(b, []).append(f)
    assert all(flags == [True, False] for flags in fresh.values())
    # without replay the micro-batches pass through in order
    assert [b for b, _ in replay_micro_batches(iter(range(10)), 1, 3, 3)] == list(range(9))


def test_batch_scale_and_learning_rate_in_global_batch_terms():
    plan = StagePlan.build(efficienttrain(10, 224), 128, 1281167, world=8, accum=2)
    plain = StagePlan.build(efficienttrain(10, 224), 128, 1281167, world=8, accum=1)
    assert plan.ref_steps == 1281167 // 8 // 128 // 2 and plan.micro_batches(0) == 2 * plan.epoch_steps[0]
    # positions count optimizer steps at the global batch: half an epoch is half of ref_steps either way
    assert plan.lr_position(3, plan.epoch_steps[3] / 2) == pytest.approx(3.5 * plan.ref_steps, rel=1e-12)
    assert plan.progress(3, plan.epoch_steps[3] / 2) == pytest.approx(plain.progress(3, plain.epoch_steps[3] / 2),
                                                                       rel=1e-12)
    scaled = StagePlan.build(with_batch_scale(efficienttrain(10, 224), 2), 128, 1281167, world=8, accum=2)
    first = scaled.describe()[0]
    assert (first["global_batch"], first["lr_factor"]) == (256 * 8 * 2, 2.0)  # k x the global batch, k x the rate
    assert scaled.describe()[-1]["global_batch"] == 128 * 8 * 2


def test_bad_accumulation_settings():
    with pytest.raises(ConfigError, match="train.accum_steps"):
        load_config(None, ["train.accum_steps=0"])
    with pytest.raises(ConfigError, match="needs train.global_batch"):
        load_config(None, ["train.accum_steps=auto"])
    with pytest.raises(ConfigError, match="not a multiple of train.batch_size"):
        load_config(None, ["train.global_batch=1000", "train.batch_size=128"])
    assert resolve_accum_steps("auto", 4096, 128, 8) == 4  # ET_training.py: update_freq = 4096 / gpus / batch
    with pytest.raises(TrainError, match="not a multiple of train.batch_size x processes"):
        resolve_accum_steps("auto", 4096, 128, 3)
    with pytest.raises(TrainError, match="set train.accum_steps=auto"):
        resolve_accum_steps(2, 4096, 128, 8)
    with pytest.raises(TrainError, match="smaller than one global batch"):
        StagePlan.build(efficienttrain(10, 32), 8, 60, world=2, accum=4)
