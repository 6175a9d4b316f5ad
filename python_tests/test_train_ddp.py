"""DDP with two gloo processes on CPU (torchrun), through a ViT size switch (the DDP wrapper is rebuilt)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from efficienttrain_ext.engine.checkpoint import load as load_checkpoint

from _etrain_helpers import FMNIST, TINY_VIT, metrics, run_torchrun, tiny_args


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")
def test_ddp_two_gloo_processes(tmp_path):
    # 2 ranks x batch 8 x 4 steps = 64 images per epoch, split by the DistributedSampler
    args = tiny_args(tmp_path, "ddp", "--curriculum", "efficienttrain", "--device", "cpu",
                     size=64, epochs=3, subset=64, val=30, batch=8, model=TINY_VIT)
    run_torchrun(args)
    rows = metrics(tmp_path / "ddp")
    assert [r["size"] for r in rows] == [48, 48, 64]
    assert all(r["train_images"] == 64 for r in rows)
    # the validation shards (15 + 15 images) are summed over ranks: accuracy is a multiple of 1/30
    for r in rows:
        assert abs(r["top1"] * 30 / 100 - round(r["top1"] * 30 / 100)) < 1e-6
    ck = load_checkpoint(tmp_path / "ddp")
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2
    assert ck["model"]["pos_embed"].shape == (1, 17, 32)
    # the ranks' RNG streams differ (distinct augmentation per rank)
    assert not torch.equal(ck["rng"][0]["torch"], ck["rng"][1]["torch"])


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")
def test_ddp_batch_scale_and_replay(tmp_path):
    # below the final size: twice the batch (2 ranks x 16 = 2 steps per epoch) and every loaded batch used twice;
    # each stage has its own loader and DistributedSampler, and both ranks take the same number of steps
    args = tiny_args(tmp_path, "ddp", "--curriculum", "efficienttrain", "--device", "cpu",
                     "--set", "curriculum.batch_scale=2", "--set", "curriculum.replay=2",
                     size=64, epochs=3, subset=64, val=30, batch=8, model=TINY_VIT)
    run_torchrun(args)
    rows = metrics(tmp_path / "ddp")
    assert [(r["size"], r["replay"]) for r in rows] == [(48, 2), (48, 2), (64, 1)]
    assert [r["train_images"] for r in rows] == [64, 64, 64]
    assert [r["loaded_images"] for r in rows] == [32, 32, 64]
    sched = json.loads((tmp_path / "ddp" / "schedule.json").read_text())
    assert [(st["batch"], st["steps_per_epoch"]) for st in sched["stages"]] == [(16, 2), (8, 4)]
    assert load_checkpoint(tmp_path / "ddp")["global_step"] == sched["total_steps"] == 8


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")
def test_ddp_authors_replay(tmp_path):
    # replay_mode=authors: each rank loads 4 images per step and draws 4 from its own buffer; both ranks take the same
    # 4 steps of 8 (2 x 4 x 8 = 64 images trained per epoch, 32 loaded below the final size)
    args = tiny_args(tmp_path, "ddp", "--curriculum", "efficienttrain", "--device", "cpu",
                     "--set", "curriculum.replay=2", "--set", "curriculum.replay_mode=authors",
                     "--set", "curriculum.replay_buffer=3", size=64, epochs=3, subset=64, val=30, batch=8,
                     model=TINY_VIT)
    run_torchrun(args)
    rows = metrics(tmp_path / "ddp")
    assert [(r["size"], r["replay"]) for r in rows] == [(48, 2), (48, 2), (64, 1)]
    assert [r["train_images"] for r in rows] == [64, 64, 64]
    assert [r["loaded_images"] for r in rows] == [32, 32, 64]
    assert load_checkpoint(tmp_path / "ddp")["global_step"] == 12
