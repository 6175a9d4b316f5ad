"""A run killed mid-epoch and resumed ends exactly where an uninterrupted run ends (CPU, deterministic)."""

from __future__ import annotations

import os

import pytest
import torch

from efficienttrain_ext.checkpoint import load as load_checkpoint

from _etrain_helpers import FMNIST, TINY_VIT, metrics, run_etrain, tiny_args

TIMING_KEYS = {"train_time", "train_cpu_time", "img_s", "wall_time", "train_time_total"}


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")
@pytest.mark.parametrize("options,kill_at,saved_epoch", [
    # 4 steps per epoch: step 9 is the second step of epoch 3, after the stage switch and the epoch-2 checkpoint
    (None, 9, 2),
    # replay 2 below the final size: step 5 is the second step of epoch 2, inside a replayed stage
    ("{replay: 2}", 5, 1),
    # twice the batch below the final size (2 steps per epoch there): step 3 is the second step of epoch 2
    ("{batch_scale: 2}", 3, 1),
], ids=["plain", "replay", "batch_scale"])
def test_killed_and_resumed_run_equals_uninterrupted(tmp_path, options, kill_at, saved_epoch):
    # a DeiT through a size switch (48 -> 64, pos_embed and its AdamW moments resampled) with the full recipe:
    # RandAugment, mixup/cutmix, random erasing and EMA all draw random numbers, so every RNG must be restored
    common = dict(size=64, epochs=3, subset=64, val=32, batch=16, model=TINY_VIT)
    extra = ["--curriculum", "efficienttrain"]
    if options:
        extra += ["--set", f"curriculum.options={options}"]
    run_etrain(tiny_args(tmp_path, "full", *extra, **common))
    killed = run_etrain(tiny_args(tmp_path, "killed", *extra, "--set", f"train.debug_kill_at_step={kill_at}",
                                  **common), check=False)
    assert killed.returncode == 3, killed.stderr
    assert len(metrics(tmp_path / "killed")) == saved_epoch
    assert load_checkpoint(tmp_path / "killed")["epoch"] == saved_epoch
    run_etrain(["train", "--resume", str(tmp_path / "killed")])  # the run's own configuration

    full, resumed = metrics(tmp_path / "full"), metrics(tmp_path / "killed")
    assert len(full) == len(resumed) == 3
    assert [r["replay"] for r in full] == ([2, 2, 1] if options and "replay" in options else [1, 1, 1])
    assert [r["train_images"] for r in full] == [64, 64, 64]
    for a, b in zip(full, resumed):
        assert {k: v for k, v in a.items() if k not in TIMING_KEYS} == \
               {k: v for k, v in b.items() if k not in TIMING_KEYS}
    ca, cb = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "killed")
    for part in ("model", "ema"):
        for k, v in ca[part].items():
            assert torch.equal(v, cb[part][k]), (part, k)
    for pid, st in ca["optimizer"]["state"].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(cb["optimizer"]["state"][pid][k])), (pid, k)
