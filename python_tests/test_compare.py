"""`etrain compare`: spec parsing, cost matching (vs analytic epoch counts and the FLOP-counted schedule cost), and a
small comparison end to end (tables vs the runs' own metrics, finished runs skipped, interrupted ones resumed)."""

from __future__ import annotations

import json
import os
import statistics

import pytest

from efficienttrain_ext import cli
from efficienttrain_ext.config import apply_overrides, load_config
from efficienttrain_ext.curriculum import flops_by_size, plan, stage_costs
from efficienttrain_ext.engine.compare import (COMPARE_FILES, front_points, method_of, own_final_epochs, parse_spec,
                                               resolve_entries, summarize)
from efficienttrain_ext.engine.model_factory import create_model
from efficienttrain_ext.errors import ConfigError

from _etrain_helpers import FMNIST, REPO, metrics

TINY = ["model.name=resnet10t", "data.final_size=32", "train.epochs=10"]


def test_parse_spec():
    e = parse_spec("efficienttrain")
    assert (e.label, e.curriculum, e.overrides, e.cost_ref) == ("efficienttrain", "efficienttrain",
                                                                 ["curriculum.name=efficienttrain"], None)
    e = parse_spec("progressive@progressive.min_scale=0.5@train.epochs=7@resize=area")
    assert e.overrides == ["curriculum.name=progressive", "curriculum.progressive.min_scale=0.5", "train.epochs=7",
                           "curriculum.resize=area"]
    assert e.label == "progressive@progressive.min_scale=0.5@train.epochs=7@resize=area"
    e = parse_spec("configs/schedules/two_stage_example.yaml@m0=5")
    assert e.label == "two_stage_example@m0=5" and e.overrides[1] == "curriculum.m0=5"
    e = parse_spec("none@cost=efficienttrain")
    assert e.cost_ref == "efficienttrain" and e.overrides == ["curriculum.name=none"]
    for bad, msg in (("", "no curriculum name"), ("@resize=x", "no curriculum name"), ("none@resize", "KEY=VALUE"),
                     ("none@name=x", "before the first @")):
        with pytest.raises(ConfigError, match=msg):
            parse_spec(bad)


def test_cost_matching():
    base = load_config(None, TINY)
    got = {e.spec: (e, cfg) for e, cfg in resolve_entries(
        base, ["none@cost=efficienttrain", "none@cost=0.5", "progressive@cost=efficienttrain",
               "efficienttrain++@cost=efficienttrain"], 10)}
    # EfficientTrain's predicted cost, counted here from its schedule and the FLOPs per size
    model = create_model(base, 10)
    et = plan("efficienttrain", epochs=10, final_size=32, model=model)
    _, c_et = stage_costs(et, flops_by_size(model, [s.size for s in et.stages]))
    assert 0.6 < c_et < 0.9
    e, cfg = got["none@cost=efficienttrain"]
    assert cfg.train.epochs == round(10 * c_et) and e.resolved == [f"train.epochs={round(10 * c_et)}"]
    assert got["none@cost=0.5"][1].train.epochs == 5
    for spec in ("progressive@cost=efficienttrain", "efficienttrain++@cost=efficienttrain"):
        e, cfg = got[spec]
        sched = plan(cfg.curriculum.name, epochs=cfg.train.epochs, final_size=32, model=model,
                     **cfg.curriculum.schedule_options())
        _, c = stage_costs(sched, flops_by_size(model, [s.size for s in sched.stages] + [32]))
        assert c * sched.baseline / 10 == pytest.approx(c_et, abs=0.06), spec
    e, cfg = got["progressive@cost=efficienttrain"]
    assert cfg.curriculum.progressive.min_scale < 160 / 224 and cfg.train.epochs == 10
    for specs, msg in ((["none", "none"], "listed twice"), (["none@cost=bogus"], "unknown curriculum"),
                       (["none@cost=-1"], "positive"), (["none@optim.nope=1"], "unknown key")):
        with pytest.raises(ConfigError, match=msg):
            resolve_entries(base, specs, 10)


def _compare_args(out, *extra):
    sets = ["model.name=resnet10t", "data.final_size=32", "train.epochs=3", "train.batch_size=16",
            "data.train_subset=32", "data.val_subset=32", "data.workers=0", "train.progress=false",
            "train.deterministic=true", f"data.root={FMNIST}"]
    return ["compare", "--curricula", "none,efficienttrain", "--curricula", "none@cost=efficienttrain",
            "--seeds", "0,1", "--output", str(out), *[a for s in sets for a in ("--set", s)], *extra]


def test_compare_end_to_end(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert cli.main(_compare_args(out)) == 0
    for f in COMPARE_FILES:
        assert (out / f).stat().st_size > 0, f
    res = json.loads((out / "compare.json").read_text())
    labels = ["none", "efficienttrain", "none@cost=efficienttrain"]
    assert [t["curriculum"] for t in res["curricula"]] == labels and res["reference"] == "none"
    for t in res["curricula"]:  # mean and sample std over the seeds, from each run's own metrics
        finals = [metrics(out / t["curriculum"] / f"seed{s}")[-1] for s in (0, 1)]
        assert t["seeds"] == 2
        for key in ("top1", "ema_top1", "train_time_total"):
            vals = [r[key] for r in finals]
            col = "train_time" if key == "train_time_total" else key
            assert t[f"{col}_mean"] == pytest.approx(statistics.fmean(vals))
            assert t[f"{col}_std"] == pytest.approx(statistics.stdev(vals))
    by = {t["curriculum"]: t for t in res["curricula"]}
    assert by["none"]["predicted_mean"] == pytest.approx(1.0) and by["none"]["measured"] == pytest.approx(1.0)
    assert by["none@cost=efficienttrain"]["epochs"] == 2  # round(3 * cost) with cost ~0.7
    assert by["none@cost=efficienttrain"]["predicted_mean"] == pytest.approx(2 / 3)
    assert 0.6 < by["efficienttrain"]["predicted_mean"] < 0.9
    assert by["efficienttrain"]["measured"] == pytest.approx(by["efficienttrain"]["train_time_mean"]
                                                             / by["none"]["train_time_mean"])
    md = (out / "compare.md").read_text()
    assert all(f"| {lab} | 2/2 |" in md for lab in labels)
    capsys.readouterr()

    # again: every run is read, none retrained
    mtimes = {p: os.path.getmtime(p) for p in out.glob("*/seed*/last.pt")}
    assert len(mtimes) == 6
    assert cli.main(_compare_args(out)) == 0
    assert capsys.readouterr().out.count(": finished") == 6
    assert {p: os.path.getmtime(p) for p in mtimes} == mtimes
    # a run that stopped after its last checkpoint but before its summary is resumed, not retrained
    rows = metrics(out / "efficienttrain" / "seed1")
    os.unlink(out / "efficienttrain" / "seed1" / "summary.json")
    # --report-only: the finished runs tabulated, nothing trained (a grid still running elsewhere)
    assert cli.main(_compare_args(out, "--report-only")) == 0
    text = capsys.readouterr().out
    assert "| efficienttrain | 1/2 |" in text and "| none | 2/2 |" in text and "compare: [" not in text
    assert not (out / "efficienttrain" / "seed1" / "summary.json").exists()
    assert cli.main(_compare_args(out, "--report-only", "--overwrite")) == 2
    assert "--report-only" in capsys.readouterr().err
    assert cli.main(_compare_args(out)) == 0
    text = capsys.readouterr().out
    assert text.count(": finished") == 5 and "efficienttrain seed 1: resumed" in text
    assert metrics(out / "efficienttrain" / "seed1") == rows
    # another configuration into the same directory: an error, unless --overwrite
    assert cli.main(_compare_args(out, "--set", "optim.lr=0.01")) == 2
    assert "different configuration" in capsys.readouterr().err
    assert cli.main(_compare_args(out, "--seeds", "0,0")) == 2
    assert "distinct" in capsys.readouterr().err


def test_the_front_joins_each_methods_budgets(tmp_path):
    """accuracy_vs_compute.png's points, from the flower grid's recorded runs (docs/data/evidence_runs)."""
    assert [method_of(x) for x in ("none", "none@cost=0.7", "efficienttrain++@cost=0.5", "efficienttrain",
                                   "progressive@cost=efficienttrain")] == \
        ["none", "none", "efficienttrain++", "efficienttrain", "progressive"]
    base = load_config(os.path.join(REPO, "configs/flowers112_evidence.yaml"))
    entries = [e for e, _ in resolve_entries(base, ["none", "efficienttrain", "none@cost=efficienttrain",
                                                    "none@cost=0.3"], 5)]
    result = summarize(os.path.join(REPO, "docs/data/evidence_runs/flowers112/cnn"), entries, [0], 30)
    by_run = {r["curriculum"]: r for r in result["runs"]}
    front = front_points(result, "predicted_mean")
    assert set(front) == {"none", "efficienttrain"}  # none@cost=0.3 is not in the grid (no run): not on the front
    # none's two budgets on one line, ordered by compute: the cut baseline (20 epochs) first, then the full one
    assert [(p[0], p[1], p[3]) for p in front["none"]] == [
        (by_run["none@cost=efficienttrain"]["predicted"], by_run["none@cost=efficienttrain"]["top1"], 1),
        (by_run["none"]["predicted"], by_run["none"]["top1"], 1)]
    assert front["none"][0][0] < front["none"][1][0] == pytest.approx(1.0)
    assert [p[0] for p in front_points(result, "cpu")["none"]][-1] == pytest.approx(1.0)  # the reference


def test_cpu_in_a_runs_own_final_size_epochs():
    # hand-computed: 2 epochs at 16 px (1 s each), 2 at 32 px (3 s and 5 s: the machine got busier), 100 images an
    # epoch; 32 px costs 8 s / 200 images = 0.04 s an image, 4 s an epoch; the run's 10 s are 2.5 such epochs,
    # 0.25 of a 10-epoch budget, whatever the load was
    rows = [{"size": 16, "train_cpu_time": 1.0, "train_images": 100}] * 2 + \
        [{"size": 32, "train_cpu_time": 3.0, "train_images": 100}, {"size": 32, "train_cpu_time": 5.0,
                                                                     "train_images": 100}]
    assert own_final_epochs(rows, 32, 10) == pytest.approx(10.0 / (0.04 * 100 * 10))
    slower = [dict(r, train_cpu_time=2 * r["train_cpu_time"]) for r in rows]  # all twice as slow: the same cost
    assert own_final_epochs(slower, 32, 10) == pytest.approx(0.25)
    assert own_final_epochs(rows[:2], 32, 10) is None  # no final-size epoch to measure against
    assert own_final_epochs([dict(r, train_cpu_time=0.0) for r in rows], 32, 10) is None
    # through summarize, on the recorded CIFAR-10 grid (final size and budget from the runs' schedule.json): runs at
    # the final size only are their epochs over the budget
    base = load_config(os.path.join(REPO, "configs/cifar10_evidence.yaml"))
    entries = [e for e, _ in resolve_entries(base, ["none", "none@cost=0.5"], 10)]
    result = summarize(os.path.join(REPO, "docs/data/evidence_runs/cifar10/cnn"), entries, [0, 1, 2], 10)
    by = {t["curriculum"]: t for t in result["curricula"]}
    assert by["none"]["own_cpu_mean"] == pytest.approx(1.0) and by["none@cost=0.5"]["own_cpu_mean"] == pytest.approx(0.5)
    assert "cpu (own)" in result["markdown"]
