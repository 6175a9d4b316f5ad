"""Larger batches at small sizes (EfficientTrain++): the schedule option and a driver run with its learning rate."""

from __future__ import annotations

import json
import os

import pytest

from efficienttrain_ext import cli
from efficienttrain_ext.engine.checkpoint import load as load_checkpoint
from efficienttrain_ext.curriculum import (
    Schedule,
    ScheduleError,
    Stage,
    build_schedule,
    schedule_from_yaml,
    schedule_table,
    with_batch_scale,
)

from _etrain_helpers import FMNIST, metrics, tiny_args


def test_batch_scale_option_on_curricula(tmp_path):
    s = build_schedule("efficienttrain", 300, 224, batch_scale=2)
    assert [(st.size, st.batch_scale) for st in s.stages] == [(160, 2.0), (192, 2.0), (224, 1.0)]
    s = build_schedule("efficienttrain++", 300, 224, batch_scale="pixels", replay={96: 2})
    for st in s.stages:
        assert st.batch_scale == pytest.approx((224 / st.size) ** 2)
        assert st.replay == (2 if st.size == 96 else 1)
    assert "batch x" in schedule_table(s) and "batch x" not in schedule_table(build_schedule("none", 3, 64))
    assert Schedule.from_dict(s.to_dict()) == s
    assert with_batch_scale(build_schedule("none", 10, 64), {64: 0.5}).stages[0].batch_scale == 0.5
    for bad in (0, -1, float("nan"), float("inf"), True):
        with pytest.raises(ScheduleError, match="positive number"):
            build_schedule("efficienttrain", 300, 224, batch_scale=bad)
    with pytest.raises(ScheduleError, match="unknown rule 'square'.*pixels"):
        build_schedule("efficienttrain", 300, 224, batch_scale="square")
    with pytest.raises(ScheduleError, match=r"batch_scale given for sizes \[100\]"):
        build_schedule("efficienttrain", 300, 224, batch_scale={100: 2})
    with pytest.raises(ScheduleError, match="batch_scale must be a positive number"):
        Schedule("s", 2, 32, (Stage(0, 2, 32, batch_scale=0.0),))
    p = tmp_path / "s.yaml"
    p.write_text("stages:\n  - {fraction: 0.5, scale: 0.5, batch_scale: 4}\n  - {fraction: 0.5, scale: 1.0}\n")
    assert [(st.size, st.batch_scale) for st in schedule_from_yaml(str(p), 10, 128).stages] == [(64, 4.0), (128, 1.0)]


def _run(tmp_path, name, *extra):
    args = tiny_args(tmp_path, name, "--curriculum", "efficienttrain", *extra, subset=64, val=32)
    assert cli.main(args) == 0
    return metrics(tmp_path / name)


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")
def test_driver_doubles_batch_and_lr_below_final_size(tmp_path):
    plain = _run(tmp_path, "plain")
    big = _run(tmp_path, "big", "--set", "curriculum.batch_scale=2")
    # 3 epochs at final 32: B = 22, 22, 32; batch 32 (2 steps of the 64 images) then 16 (4 steps)
    assert [r["train_images"] for r in big] == [64, 64, 64]
    sched = json.loads((tmp_path / "big" / "schedule.json").read_text())
    assert [(st["batch"], st["steps_per_epoch"]) for st in sched["stages"]] == [(32, 2), (16, 4)]
    assert sched["total_steps"] == 8 and sched["steps_per_epoch"] == 4
    assert load_checkpoint(tmp_path / "big" / "last.pt")["global_step"] == 8
    # the learning-rate schedule runs in epochs: after epoch e both runs sit at the same point of timm's
    # scheduler; the doubled batch doubles the learning rate (linear scaling), the final stage is unscaled
    assert big[0]["lr"] == pytest.approx(2 * plain[0]["lr"], rel=1e-12)
    assert big[1]["lr"] == pytest.approx(2 * plain[1]["lr"], rel=1e-12)
    assert big[2]["lr"] == pytest.approx(plain[2]["lr"], rel=1e-12)
    # m = 9 t / T follows epoch progress like the learning rate, in steps of batch 16 (T = 12): the last of the
    # doubled batch's 2 steps in epoch 1 starts at t = 2 (the plain run's last, 4 steps, at t = 3)
    assert big[0]["magnitude"] == pytest.approx(9 * 2 / 12) and plain[0]["magnitude"] == pytest.approx(9 * 3 / 12)
    assert big[2]["magnitude"] == plain[2]["magnitude"] == pytest.approx(9 * 11 / 12)
