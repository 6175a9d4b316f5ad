"""Per-epoch metrics files and the optional TensorBoard scalars, read back with TensorBoard's own reader."""

from __future__ import annotations

import csv
import os

import pytest

from efficienttrain_ext import cli
from efficienttrain_ext.engine.metrics import MetricsLog, read_metrics

from _etrain_helpers import FMNIST, tiny_args

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _scalars(tb_dir):
    acc = event_accumulator.EventAccumulator(str(tb_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_metrics_log_files_and_tensorboard(tmp_path):
    log = MetricsLog(str(tmp_path), tensorboard=True)
    log.append({"epoch": 1, "top1": 10.0, "train_loss": 2.0, "size": 22, "curriculum": "efficienttrain"})
    log.append({"epoch": 2, "top1": 20.5, "train_loss": 1.5, "size": 32, "top1_at_B": 12.0})
    log.close()
    assert [r["epoch"] for r in read_metrics(str(tmp_path))] == [1, 2]
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[1]["top1_at_B"] == "12.0" and rows[0]["top1_at_B"] == ""  # a column that appears later
    sc = _scalars(tmp_path / "tb")
    assert sc["top1"] == [(1, 10.0), (2, 20.5)] and sc["size"] == [(1, 22.0), (2, 32.0)]
    assert sc["top1_at_B"] == [(2, 12.0)]
    assert "curriculum" not in sc and "epoch" not in sc  # strings and the step itself are not scalars
    # a resumed log keeps the rows up to the checkpoint's epoch and drops later ones
    log = MetricsLog(str(tmp_path), keep_epochs=1)
    assert [r["epoch"] for r in log.rows] == [1] and [r["epoch"] for r in read_metrics(str(tmp_path))] == [1]


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")
def test_driver_writes_tensorboard_scalars(tmp_path):
    assert cli.main(tiny_args(tmp_path, "tb", "--set", "train.tensorboard=true", epochs=2, subset=32, val=32)) == 0
    sc = _scalars(tmp_path / "tb" / "tb")
    assert [s for s, _ in sc["top1"]] == [1, 2] and [s for s, _ in sc["train_loss"]] == [1, 2]
    assert {"lr", "magnitude", "img_s", "wall_time"} <= set(sc)
