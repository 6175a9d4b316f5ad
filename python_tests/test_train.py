"""End-to-end driver runs (Fashion-MNIST, ImageFolder with a corrupt image, ViT with size switches) and bad input."""

from __future__ import annotations

import csv
import json
import os

import pytest
import torch
import yaml

from efficienttrain_ext import cli
from efficienttrain_ext.engine.checkpoint import load as load_checkpoint
from efficienttrain_ext.engine import checkpoint as ckpt_io

from _etrain_helpers import FMNIST, TINY_VIT, make_image_folder, metrics, tiny_args

needs_fmnist = pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")


@needs_fmnist
def test_fashion_mnist_efficienttrain_run(tmp_path, capsys):
    assert cli.main(tiny_args(tmp_path, "et", "--curriculum", "efficienttrain")) == 0
    out = capsys.readouterr().out
    run = tmp_path / "et"
    rows = metrics(run)
    # 3 epochs at final 32: 60%/80% boundaries round to epochs 2, 2 -> B = 22 (32*160/224, even) then 32
    assert [r["size"] for r in rows] == [22, 22, 32]
    assert [r["stage"] for r in rows] == [0, 0, 1]
    assert all(r["train_images"] == 64 for r in rows)  # 4 steps of 16 per epoch
    # m = 9 t / T per step: at the end of epoch e (last step index 4e - 1 of T = 12 steps)
    for r in rows:
        assert r["magnitude"] == pytest.approx(9 * (4 * r["epoch"] - 1) / 12)
    assert all(0 <= r["top1"] <= 100 and "ema_top1" in r for r in rows)
    assert "top1_at_B" in rows[0] and "top1_at_B" not in rows[2]
    with open(run / "metrics.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["curriculum"]["name"] == "efficienttrain" and cfg["model"]["name"] == "resnet10t"
    assert cfg["optim"]["weight_decay"] == 0.05 and cfg["aug"]["mixup"] == 0.8  # paper defaults resolved
    assert {"last.pt", "stage1.pt", "schedule.json", "summary.txt"} <= set(os.listdir(run))
    assert not [f for f in os.listdir(run) if f.startswith(".tmp")]
    ck = load_checkpoint(run / "last.pt")
    assert ck["epoch"] == 3 and ck["global_step"] == 12
    assert load_checkpoint(run / "stage1.pt")["epoch"] == 2
    sched = json.loads((run / "schedule.json").read_text())
    assert 0 < sched["predicted_cost"] < 1
    assert "cost vs baseline: predicted" in out and "final: top1" in out

    # plots of the run
    assert cli.main(["plot", str(run), "-o", str(tmp_path / "plots")]) == 0
    for name in ("accuracy_vs_time.png", "schedule.png", "lr.png"):
        with open(tmp_path / "plots" / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@needs_fmnist
def test_vit_switches_size_in_process(tmp_path):
    # DeiT (patch 16) at final 64: sizes 48 then 64, pos_embed resized with the optimizer and EMA following
    args = tiny_args(tmp_path, "vit", "--curriculum", "efficienttrain", size=64, epochs=3, model=TINY_VIT)
    assert cli.main(args) == 0
    rows = metrics(tmp_path / "vit")
    assert [r["size"] for r in rows] == [48, 48, 64]
    ck = load_checkpoint(tmp_path / "vit" / "last.pt")
    assert ck["input_size"] == 64
    assert ck["model"]["pos_embed"].shape == (1, 1 + 16, 32) and ck["ema"]["pos_embed"].shape == (1, 17, 32)
    pe_state = [s for s in ck["optimizer"]["state"].values() if s["exp_avg"].shape == (1, 17, 32)]
    assert len(pe_state) == 1  # the resampled moments were saved with the new shape
    assert load_checkpoint(tmp_path / "vit" / "stage1.pt")["input_size"] == 64


def test_image_folder_with_corrupt_image(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data")
    bad = root / "train" / "circle" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    args = tiny_args(tmp_path, "folder", "--dataset", "imagefolder", "--data-root", str(root), "--curriculum",
                     "none", subset=25, val=100, batch=8, epochs=1)
    with pytest.warns(RuntimeWarning, match="skipping unreadable image .*broken.png"):
        assert cli.main(args) == 0
    rows = metrics(tmp_path / "folder")
    assert rows[-1]["skipped_images"] == 1
    assert "skipped 1 unreadable images" in capsys.readouterr().out


def test_bad_inputs(tmp_path, capsys):
    def fails(args, message):
        assert cli.main(args) == 2
        err = capsys.readouterr().err
        assert message in err, err

    base = tiny_args(tmp_path, "bad", epochs=1)
    fails([*base, "--model", "resnet_does_not_exist"], "unknown timm model 'resnet_does_not_exist'")
    fails([*base, "--curriculum", "efficient"], "unknown curriculum 'efficient'")
    fails([*base, "--set", "optim.nonsense=1"], "optim.nonsense: unknown key")
    fails([*base, "--set", "train.epochs=three"], "train.epochs: Input should be a valid integer")
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "val").mkdir()
    fails([*base, "--dataset", "imagefolder", "--data-root", str(empty)], "no images found in")
    fails([*base, "--dataset", "imagefolder", "--data-root", str(tmp_path / "missing")], "does not exist")
    fails([*base, "--data-root", str(tmp_path / "missing")], "data root " + str(tmp_path / "missing") + " does not exist")
    fails([*base, "--dataset", "fashion_mnist", "--data-root", str(tmp_path / "missing")], "Fashion-MNIST directory")
    # a DeiT with 16-pixel patches cannot take 72x72
    fails(tiny_args(tmp_path, "bad", size=72, epochs=1, model=TINY_VIT), "final size 72 is not a multiple of 16")
    fails([*base, "--resume", str(tmp_path / "nowhere.pt")], "not found")


@needs_fmnist
def test_resume_from_another_config_and_existing_run_dir(tmp_path, capsys):
    args = tiny_args(tmp_path, "r", "--curriculum", "none", epochs=1, subset=32, val=32)
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(args) == 2  # same run directory again without --resume
    assert "already holds a run" in capsys.readouterr().err
    assert cli.main([*args, "--resume", str(tmp_path / "r"), "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "optim.lr" in err
    # a checkpoint of an older version, written before the mae section and the stored schedule existed: the
    # section takes its defaults and the run resumes; a key this version does not know is a clear error
    last = tmp_path / "r" / "last.pt"
    ck = ckpt_io.load(last)
    ck["config"].pop("mae")
    ck.pop("schedule")
    ck["fingerprint"] = ckpt_io.fingerprint({s: v for s, v in ck["config"].items()})
    ckpt_io.save_atomic(ck, last)
    assert cli.main([*args, "--resume", str(tmp_path / "r")]) == 0, capsys.readouterr().err
    capsys.readouterr()
    ck["config"]["train"]["from_the_future"] = 1
    ckpt_io.save_atomic(ck, last)
    assert cli.main([*args, "--resume", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "train.from_the_future: unknown key" in err, err
    # a file that is not a checkpoint
    junk = tmp_path / "junk.pt"
    torch.save({"hello": 1}, junk)
    assert cli.main([*args, "--resume", str(junk)]) == 2
    assert "not an etrain checkpoint" in capsys.readouterr().err


@needs_fmnist
def test_timm_randaugment_behind_the_same_interface(tmp_path, capsys):
    # The default is the batched op; timm's per-image PIL transform stays selectable.
    args = tiny_args(tmp_path, "timm_ra", "--curriculum", "efficienttrain", "--set", "aug.randaugment_impl=timm",
                     epochs=2, subset=32, val=32)
    assert cli.main(args) == 0
    assert [r["size"] for r in metrics(tmp_path / "timm_ra")] == [22, 32]  # 60% of 2 epochs at 22, then 32
    bad = tiny_args(tmp_path, "bad_impl", "--set", "aug.randaugment_impl=gpu", epochs=1, subset=32, val=32)
    assert cli.main(bad) == 2
    assert "aug.randaugment_impl: Input should be 'batched' or 'timm'" in capsys.readouterr().err
