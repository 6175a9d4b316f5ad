"""scripts/bench_step.py and scripts/sync_debug_epoch.py run on the CPU as documented (tiny sizes), write what they
say, and refuse bad input with a message naming it."""

from __future__ import annotations

import csv
import importlib.util
import os

import pytest
import timm

from efficienttrain_ext.curriculum.flops import flops_by_size

from _etrain_helpers import REPO


def _script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "scripts", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_step_table_csv_and_ratios(tmp_path, capsys):
    bench = _script("bench_step")
    out = tmp_path / "b"
    assert bench.main(["--device", "cpu", "--models", "resnet10t", "--modes", "eager,compile", "--compile-backend",
                       "aot_eager", "--final-size", "32", "--batch", "4", "--steps", "1", "--warmup", "0",
                       "--num-classes", "2", "--threads", "1", "--repeats", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| model | mode | size |" in printed and "model step (no EMA, no batch path), 3 x 1 timed steps" in printed
    with open(out / "bench_step.csv") as f:
        rows = list(csv.DictReader(f))
    # three repeats per cell: img/s from the median, the fastest apart (never slower than the median)
    for r in rows:
        assert r["repeats"] == "3" and float(r["ms_min"]) <= float(r["ms_per_step"])
        assert float(r["img_s"]) == pytest.approx(4 / (float(r["ms_per_step"]) / 1e3), rel=1e-6)
    # efficienttrain's b_list = [160]*3 + [192] + [224] (LeapLabTHU/EfficientTrain, ET_training.py) at final 32:
    # 160/224 * 32 = 22.9 and 192/224 * 32 = 27.4, rounded to the nearest even size (the crop's even-size rule)
    assert sorted({int(r["size"]) for r in rows}) == [22, 28, 32]
    assert {r["mode"] for r in rows} == {"eager", "compile"} and all(float(r["img_s"]) > 0 for r in rows)
    flops = flops_by_size(timm.create_model("resnet10t", num_classes=2), [22, 28, 32])
    for r in rows:
        assert float(r["flop_ratio"]) == pytest.approx(flops[int(r["size"])] / flops[32], rel=1e-9)
        assert float(r["realised"]) == pytest.approx(float(r["flop_ratio"]) / float(r["time_ratio"]), rel=1e-6)
        if int(r["size"]) == 32:
            assert float(r["time_ratio"]) == 1.0
    assert (out / "bench_step.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a spent budget skips the cells and says so; bad modes are refused
    assert bench.main(["--device", "cpu", "--models", "resnet10t", "--modes", "eager", "--final-size", "32",
                       "--batch", "2", "--steps", "1", "--budget-s", "0", "--out", str(tmp_path / "c")]) == 0
    with open(tmp_path / "c" / "bench_step.csv") as f:
        assert {r["skipped"] for r in csv.DictReader(f)} == {"budget"}
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0"])
    assert "and --repeats must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--modes", "eager,fast"])
    assert "unknown mode(s) ['fast']" in capsys.readouterr().err


def test_sync_debug_epoch_runs_on_the_cpu(capsys):
    sync = _script("sync_debug_epoch")
    assert sync.main(["--device", "cpu", "--model", "resnet10t", "--final-size", "32", "--batch", "4", "--steps",
                      "2", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "ok: epoch at B 22 (8 images" in out and "CPU: nothing to debug" in out
