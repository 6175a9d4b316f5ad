"""Curriculum searches: Algorithm 1 (et), the forward variant and EfficientTrain++'s computation-constrained search on
accuracy functions with known answers (trial sequences derived by hand), and `etrain search` on Fashion-MNIST."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from efficienttrain_ext import cli
from efficienttrain_ext.curriculum import schedule_from_yaml
from efficienttrain_ext.errors import ScheduleError, SearchError
from efficienttrain_ext.search import (Measurement, etpp_schedule_spec, etpp_stage_epochs, schedule_spec, search_et,
                                       search_etpp, search_forward)

from _etrain_helpers import FMNIST, REPO, etrain_env, metrics, run_etrain, tiny_args

CANDS = [96, 128, 160, 192]
TIMING_KEYS = {"train_time", "train_cpu_time", "img_s", "wall_time", "train_time_total"}


def sum_threshold(total, calls):
    """Accuracy 80, minus one point per 32 px that the sizes' sum falls short of ``total``: the stages trade off
    against each other, so the forward and the backward order choose different schedules."""

    def evaluate(sizes):
        calls.append(sizes)
        return 80.0 - max(0, total - sum(sizes)) / 32

    return evaluate


def per_stage(required, calls):
    """Accuracy 80, minus one point per stage whose size is below its required size."""

    def evaluate(sizes):
        calls.append(sizes)
        return 80.0 - sum(s < r for s, r in zip(sizes, required))

    return evaluate


# ---------------------------------------------------------------------------------------------------------------
# Algorithm 1: the exact trial sequences (each derived by hand in the comments) for N = 3, 4, 5


def test_algorithm1_n3_trial_sequence_differs_from_forward():
    calls = []
    res = search_et(sum_threshold(512, calls), CANDS, 3, 224)
    # i = 2: prefix (B, B, 224) down from 192: 608 ok, 544 ok, 480 < 512 stops -> 160
    # i = 1: below 160: (128, 160, 224) = 512 ok, (96, 160, 224) = 480 stops -> 128
    assert calls == [(224, 224, 224), (192, 192, 224), (160, 160, 224), (128, 128, 224), (128, 160, 224),
                     (96, 160, 224)]
    assert res.sizes == (128, 160, 224) and res.accuracy == res.baseline_accuracy == 80.0
    assert [t.accepted for t in res.trials] == [False, True, True, False, True, False]
    assert [t.stage for t in res.trials] == [-1, 1, 1, 1, 0, 0]
    assert res.algorithm == "et" and [t.sizes for t in res.trials] == calls
    # forward: stage 1 alone drops to 96 (544 ok), then stage 2 needs 192 (96+192+224 = 512)
    calls.clear()
    fwd = search_forward(sum_threshold(512, calls), CANDS, 3, 224)
    assert fwd.sizes == (96, 192, 224) != res.sizes
    assert calls == [(224, 224, 224), (96, 224, 224), (96, 96, 224), (96, 128, 224), (96, 160, 224), (96, 192, 224)]


def test_algorithm1_n4_with_tolerance():
    calls = []
    # threshold 80 - 1: the sum may fall 32 short of 672, i.e. sum >= 640
    res = search_et(sum_threshold(672, calls), CANDS, 4, 224, tolerance=1.0)
    # i = 3: (B, B, B, 224): 800 ok, 704 ok, 608 stops -> 160
    # i = 2: (B, B, 160, 224) below 160: 640 ok (79.0, at the threshold), 576 stops -> 128
    # i = 1: (B, 128, 160, 224) below 128: 608 stops -> 128 stays
    assert calls == [(224,) * 4, (192, 192, 192, 224), (160, 160, 160, 224), (128, 128, 128, 224),
                     (128, 128, 160, 224), (96, 96, 160, 224), (96, 128, 160, 224)]
    assert res.sizes == (128, 128, 160, 224) and res.accuracy == 79.0 and res.tolerance == 1.0
    calls.clear()
    assert search_forward(sum_threshold(672, calls), CANDS, 4, 224, tolerance=1.0).sizes == (96, 96, 224, 224)


def test_algorithm1_n5_trial_sequence():
    calls = []
    res = search_et(sum_threshold(800, calls), CANDS, 5, 224)
    # i = 4: (B x4, 224): 992 ok, 864 ok, 736 stops -> 160
    # i = 3: (B x3, 160, 224) below 160: 768 stops at once -> 160 stays
    # i = 2: (B, B, 160, 160, 224): 800 ok, 736 stops -> 128
    # i = 1: (B, 128, 160, 160, 224) below 128: 768 stops
    assert calls == [(224,) * 5, (192,) * 4 + (224,), (160,) * 4 + (224,), (128,) * 4 + (224,),
                     (128, 128, 128, 160, 224), (128, 128, 160, 160, 224), (96, 96, 160, 160, 224),
                     (96, 128, 160, 160, 224)]
    assert res.sizes == (128, 128, 160, 160, 224)
    calls.clear()
    assert search_forward(sum_threshold(800, calls), CANDS, 5, 224).sizes == (96, 96, 160, 224, 224)


def test_algorithm1_reproduces_the_papers_seven_trainings():
    # stages needing EfficientTrain's Table 5 sizes: Algorithm 1 finds them with 7 trainings (the paper's count for
    # N = 5); forward finds the same schedule with 8
    calls = []
    res = search_et(per_stage((160, 160, 160, 192, 224), calls), CANDS, 5, 224)
    assert res.sizes == (160, 160, 160, 192, 224) and len(calls) == 7
    calls.clear()
    assert search_forward(per_stage((160, 160, 160, 192, 224), calls), CANDS, 5, 224).sizes == res.sizes
    assert len(calls) == 8


def test_algorithm1_nothing_passes_and_size_lists_are_trained_once():
    calls = []
    res = search_et(lambda s: calls.append(s) or (80.0 if s == (224,) * 3 else 70.0), [128, 192], 3, 224)
    assert res.sizes == (224, 224, 224) and calls == [(224,) * 3, (192, 192, 224), (192, 224, 224)]
    # a constant function: everything passes, down to the smallest candidate; each size list is evaluated once
    seen = []
    res = search_et(lambda s: seen.append(s) or 1.0, [96, 160], 3, 224)
    assert len(seen) == len(set(seen)) == len(res.trials) and res.sizes == (96, 96, 224)


def test_measurements_rank_by_the_mean_and_keep_spread_and_cost():
    def evaluate(sizes):
        accs = [80.0, 81.0] if sizes == (224, 224) else [79.0, 82.0]  # mean 80.5 >= 80.5: passes
        return Measurement.of_seeds(accs, cost=sum(s * s for s in sizes) / (2 * 224 ** 2))

    res = search_et(evaluate, [160], 2, 224)
    assert res.sizes == (160, 224) and res.accuracy == 80.5
    assert res.best.std == pytest.approx(statistics.stdev([79.0, 82.0])) and res.best.accuracies == (79.0, 82.0)
    assert res.best.cost == pytest.approx((160 ** 2 + 224 ** 2) / (2 * 224 ** 2))
    assert Measurement.of_seeds([3.0]).std == 0.0


# ---------------------------------------------------------------------------------------------------------------
# EfficientTrain++'s computation-constrained search


def closeness(target, calls):
    """Accuracy 80 minus the distance to a target schedule, in steps of 32 px (exact in floating point)."""

    def evaluate(sizes):
        calls.append(sizes)
        return 80.0 - sum(abs(s - t) for s, t in zip(sizes, target)) / 32

    return evaluate


def test_etpp_trial_sequence_ties_and_no_shrinking():
    calls = []
    res = search_etpp(closeness((128, 128, 176, 224), calls), CANDS, 4, 224, epochs=40)
    # stage 1: every candidate and 224, later stages at 224: 128 is closest
    # stage 2: sizes >= 128 only (no shrinking); (128, 224, 224, 224) was trained in stage 1 -> 128
    # stage 3: 160 and 192 are equally close to 176: the tie goes to the smaller
    assert calls == [(96, 224, 224, 224), (128, 224, 224, 224), (160, 224, 224, 224), (192, 224, 224, 224),
                     (224, 224, 224, 224),
                     (128, 128, 224, 224), (128, 160, 224, 224), (128, 192, 224, 224),
                     (128, 128, 128, 224), (128, 128, 160, 224), (128, 128, 192, 224)]
    assert res.sizes == (128, 128, 160, 224) and res.algorithm == "etpp" and res.budget == 40.0
    assert res.baseline_accuracy == 80.0 - (96 + 96 + 48) / 32
    assert [t.sizes for t in res.trials if t.accepted] == [(128, 224, 224, 224), (128, 128, 224, 224),
                                                          (128, 128, 160, 224)]
    assert res.epochs == res.best.epochs == pytest.approx((10 * (224 / 128) ** 2,) * 2 + (10 * 1.96, 10.0))
    # the final size winning a stage ends the search: the later stages cannot shrink below it
    calls.clear()
    res = search_etpp(closeness((224,) * 4, calls), CANDS, 4, 224, epochs=40)
    assert res.sizes == (224,) * 4 and len(calls) == 5


def _compute(sizes, epochs, cost):
    return [e * cost(b) for b, e in zip(sizes, epochs)]


@pytest.mark.parametrize("flops", [None, {96: 0.21, 128: 0.35, 160: 0.52, 192: 0.74}], ids=["pixels", "table"])
def test_every_etpp_trial_costs_the_budget_in_equal_stages(flops):
    cost = (lambda b: (b / 224) ** 2) if flops is None else (lambda b: {**flops, 224: 1.0}[b])
    res = search_etpp(lambda s: float(sum(s) % 7), CANDS, 5, 224, epochs=30, relative_cost=flops)
    assert len(res.trials) >= 5
    for t in res.trials:
        assert t.epochs == etpp_stage_epochs(t.sizes, 224, 30, flops)
        assert _compute(t.sizes, t.epochs, cost) == pytest.approx([6.0] * 5)  # C / N final-size epochs each


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([14, 18, 22, 28]), min_size=1, max_size=9).map(sorted),
       st.integers(min_value=0, max_value=40))
def test_whole_epochs_stay_within_half_an_epoch_of_the_budget(prefix, extra):
    sizes = tuple(prefix) + (32,)
    budget = len(sizes) + extra  # at least one final-size epoch per stage
    epochs = etpp_stage_epochs(sizes, 32, budget, whole_epochs=True)
    assert all(isinstance(e, int) and e >= 1 for e in epochs)
    assert abs(sum(_compute(sizes, epochs, lambda b: (b / 32) ** 2)) - budget) <= 0.5 + 1e-9


def test_etpp_schedule_spec_runs_the_trial_epochs_at_its_budget_and_scales_with_it():
    spec = etpp_schedule_spec((14, 22, 32), (9, 4, 2), 6, m0=9.0)
    s = schedule_from_yaml(spec, 6, 32)
    assert [(x.start, x.end, x.size, x.magnitude) for x in s.stages] == [(0, 9, 14, 0.0), (9, 13, 22, 4.5),
                                                                          (13, 15, 32, 9.0)]
    assert s.epochs == 15 and s.baseline == 6 and s.magnitude == "stage"
    longer = schedule_from_yaml(spec, 60, 32)  # a 10x budget: 10x the epochs, the same shares
    assert [(x.start, x.end) for x in longer.stages] == [(0, 90), (90, 130), (130, 150)] and longer.baseline == 60
    with pytest.raises(ScheduleError, match="budget goes with absolute stage 'epochs'"):
        schedule_from_yaml({**schedule_spec([14, 32]), "budget": 4}, 4, 32)
    with pytest.raises(ScheduleError, match="budget must be a positive number"):
        schedule_from_yaml({**spec, "budget": 0}, 6, 32)


# ---------------------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("search", [search_et, search_forward])
@pytest.mark.parametrize("kwargs,match", [
    (dict(candidates=[], stages=3), "at least one size"),
    (dict(candidates=[224], stages=3), r"candidates must lie in \[1, final size 224\)"),
    (dict(candidates=[0, 96], stages=3), "candidates must lie"),
    (dict(candidates=[96.5], stages=3), "candidates must be integers"),
    (dict(candidates=[96], stages=1), "stages must be an integer >= 2"),
    (dict(candidates=[96], stages=3, tolerance=-1), "tolerance must be a finite number >= 0"),
    (dict(candidates=[96], stages=3, tolerance=float("nan")), "tolerance must be a finite number >= 0"),
])
def test_bad_arguments(search, kwargs, match):
    with pytest.raises(SearchError, match=match):
        search(lambda s: 1.0, final_size=224, **kwargs)


@pytest.mark.parametrize("kwargs,match", [
    (dict(epochs=0), "must be a positive number"),
    (dict(epochs=float("nan")), "must be a positive number"),
    (dict(epochs=3, whole_epochs=True), "cannot give each of 4 stages a whole epoch"),
    (dict(epochs=40, relative_cost={96: 0.2}), "no entry for size 128"),
    (dict(epochs=40, relative_cost={96: 0.2, 128: 0.3, 160: -1, 192: 0.7}), "must be positive numbers"),
    (dict(epochs=40, relative_cost={96: 0.2, 128: 0.3, 160: 0.5, 192: 0.7, 224: 2.0}), "its own must be 1"),
])
def test_etpp_bad_arguments(kwargs, match):
    calls = []
    with pytest.raises(SearchError, match=match):
        search_etpp(lambda s: calls.append(s) or 1.0, CANDS, 4, 224, **kwargs)
    assert calls == []  # refused before anything is evaluated


@pytest.mark.parametrize("args,match", [
    (((), 224, 10), "non-empty list"), (((96, 300), 224, 10), r"in \[1, final size 224\]"),
    (((96, 224), 224, 1, None, True), "cannot give each of 2 stages a whole epoch"),
    (((96, 224), 224, -1), "positive number"),
])
def test_etpp_stage_epochs_bad_input(args, match):
    with pytest.raises(SearchError, match=match):
        etpp_stage_epochs(*args)


@pytest.mark.parametrize("bad", ["80", None, float("nan"), True])
def test_evaluate_returning_no_accuracy_is_an_error(bad):
    with pytest.raises(SearchError, match="evaluate"):
        search_et(lambda s: bad, [96], 2, 224)


# ---------------------------------------------------------------------------------------------------------------
# etrain search on Fashion-MNIST (tiny proxies: resnet10t at 32 px, 32 images, 2 stages)

needs_fmnist = pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")


def _search_args(tmp_path, *extra, epochs=2, subset=32, name="s"):
    args = tiny_args(tmp_path, name, epochs=epochs, subset=subset, val=32)
    return ["search", *args[1:], *extra]


def _trial_dir(d, sizes, seed=0, etpp=False):
    return d / f"trial-{'etpp-' if etpp else ''}{'_'.join(map(str, sizes))}-seed{seed}"


@needs_fmnist
def test_etrain_search_et_on_fashion_mnist(tmp_path, capsys):
    # tolerance 100: every candidate passes, so Algorithm 1's course is known: 22 passes, then 16.
    # replay {22: 2} names a candidate: trials without a stage at 22 (the baseline) must still run
    args = _search_args(tmp_path, "--candidates", "16,22", "--stages", "2", "--tolerance", "100",
                        "--set", "curriculum.replay={22: 2}")
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    d = tmp_path / "s"
    res = json.loads((d / "search.json").read_text())
    assert res["algorithm"] == "et" and res["best_sizes"] == [16, 32]
    assert [t["sizes"] for t in res["trials"]] == [[32, 32], [22, 32], [16, 32]]
    for t in res["trials"]:  # each trial is a real run whose final top-1 the search recorded
        summary = json.loads((_trial_dir(d, t["sizes"]) / "summary.json").read_text())
        assert summary["final"]["top1"] == t["accuracy"] and t["accuracies"] == [t["accuracy"]]
        assert summary["predicted_cost"] == pytest.approx(t["cost"])
    assert res["trials"][2]["cost"] < res["trials"][1]["cost"] < 1.0 == pytest.approx(res["trials"][0]["cost"])
    assert [[r["replay"] for r in metrics(_trial_dir(d, t["sizes"]))] for t in res["trials"]] == \
           [[1, 1], [2, 1], [1, 1]]
    best = schedule_from_yaml(str(d / "best_schedule.yaml"), 2, 32)
    assert [(st.size, st.replay) for st in best.stages] == [(16, 1), (32, 1)]
    assert yaml.safe_load((d / "best_schedule.yaml").read_text())["name"] == "searched"
    with open(d / "search.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "search: best sizes 16-32" in out
    # started again in the same directory: the finished trials are reused, not retrained; forward shares them
    assert cli.main(args) == 0
    assert capsys.readouterr().out.count("already trained, reusing its result") == 3
    assert cli.main(args + ["--algorithm", "forward"]) == 0
    out = capsys.readouterr().out
    assert out.count("already trained, reusing its result") == 2 and "best sizes 16-32" in out


@needs_fmnist
def test_etrain_search_etpp_on_fashion_mnist_and_train_with_its_schedule(tmp_path, capsys):
    # budget 4 final-size epochs in 2 stages; replay and batch_scale go into the schedule's stages
    extra = ["--set", "curriculum.replay=2", "--set", "curriculum.batch_scale=2", "--set", "train.ema=false"]
    args = _search_args(tmp_path, "--algorithm", "etpp", "--candidates", "16,22", "--stages", "2", "--cost",
                        "flops", *extra, epochs=4)
    assert cli.main(args) == 0
    capsys.readouterr()
    d = tmp_path / "s"
    res = json.loads((d / "search.json").read_text())
    trials = res["trials"]
    assert res["algorithm"] == "etpp" and res["budget"] == 4
    assert [t["sizes"] for t in trials] == [[16, 32], [22, 32], [32, 32]]
    accs = [t["accuracy"] for t in trials]
    assert res["best_sizes"] == trials[accs.index(max(accs))]["sizes"]  # the most accurate, the smaller on a tie
    for t in trials:
        run_dir = _trial_dir(d, t["sizes"], etpp=True)
        sched = json.loads((run_dir / "schedule.json").read_text())
        # the trial ran the epochs the search planned, all stages at the budget: the trainer's FLOP count of the
        # whole run is the budget within half a final-size epoch
        assert [s["end"] - s["start"] for s in sched["stages"]] == t["epochs"]
        assert sched["baseline_epochs"] == 4 and abs(sched["predicted_cost"] - 1.0) <= 0.5 / 4 + 1e-9
        assert t["cost"] == pytest.approx(sched["predicted_cost"])
        assert [(s["replay"], s["batch_scale"]) for s in sched["stages"]] == \
               [(2, 2.0) if s["size"] < 32 else (1, 1.0) for s in sched["stages"]]
        assert len(metrics(run_dir)) == sum(t["epochs"])
    best_trial = _trial_dir(d, res["best_sizes"], etpp=True)
    # the same command with the schedule file (no replay / batch_scale given again) reproduces the trial's stages
    train = tiny_args(tmp_path, "again", epochs=4, subset=32, val=32) + [
        "--set", "train.ema=false", "--curriculum", str(d / "best_schedule.yaml")]
    assert cli.main(train) == 0
    ours = json.loads((tmp_path / "again" / "schedule.json").read_text())
    theirs = json.loads((best_trial / "schedule.json").read_text())
    for key in ("epochs", "baseline_epochs", "predicted_cost", "final_size", "magnitude"):
        assert ours[key] == theirs[key], key
    assert ours["stages"] == theirs["stages"]  # sizes, epochs, magnitudes, replay, batch factors, batches
    assert [r["batch"] for r in metrics(tmp_path / "again")] == [r["batch"] for r in metrics(best_trial)]


@needs_fmnist
def test_etrain_search_several_seeds_rank_by_the_mean(tmp_path, capsys):
    args = _search_args(tmp_path, "--candidates", "22", "--stages", "2", "--tolerance", "100", "--seeds", "0,1")
    assert cli.main(args) == 0
    capsys.readouterr()
    d = tmp_path / "s"
    res = json.loads((d / "search.json").read_text())
    assert res["seeds"] == [0, 1]
    for t in res["trials"]:
        per_seed = [json.loads((_trial_dir(d, t["sizes"], s) / "summary.json").read_text())["final"]["top1"]
                    for s in (0, 1)]
        assert t["accuracies"] == per_seed
        assert t["accuracy"] == pytest.approx(sum(per_seed) / 2)
        assert t["std"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / math.sqrt(2))
    with open(d / "search.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["sizes"] for r in rows] == ["32-32", "22-32"]
    assert [float(r["std"]) for r in rows] == pytest.approx([t["std"] for t in res["trials"]])
    assert [r["accuracies"] for r in rows] == [";".join(f"{a:g}" for a in t["accuracies"]) for t in res["trials"]]
    # seed 0 alone afterwards reuses seed 0's trials and trains nothing
    assert cli.main(_search_args(tmp_path, "--candidates", "22", "--stages", "2", "--tolerance", "100")) == 0
    assert capsys.readouterr().out.count("already trained, reusing its result") == 2


def _start_search(args):
    return subprocess.Popen([sys.executable, "-m", "efficienttrain_ext", *args], cwd=REPO, env=etrain_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@needs_fmnist
def test_interrupted_trial_resumes_and_gives_the_uninterrupted_result(tmp_path):
    common = ["--candidates", "22", "--stages", "2", "--tolerance", "100"]
    run_etrain(_search_args(tmp_path, *common, epochs=3, name="full"))
    d = tmp_path / "killed"
    first = _trial_dir(d, (32, 32))
    proc = _start_search(_search_args(tmp_path, *common, epochs=3, name="killed"))
    try:  # SIGKILL as soon as the first trial has a checkpoint (after its first of 3 epochs)
        while proc.poll() is None and not (first / "last.pt").exists():
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    before = metrics(first)
    assert 1 <= len(before) < 3 and not (first / "summary.json").exists()
    out = run_etrain(_search_args(tmp_path, *common, epochs=3, name="killed")).stdout
    assert f"trial-32_32-seed0 was interrupted, resuming it after epoch {len(before)}" in out
    after = metrics(first)
    assert len(after) == 3 and after[:len(before)] == before  # the rows continue (timings included), not restart
    full, resumed = (json.loads((tmp_path / n / "search.json").read_text()) for n in ("full", "killed"))
    assert [(t["sizes"], t["accuracy"]) for t in resumed["trials"]] == \
           [(t["sizes"], t["accuracy"]) for t in full["trials"]]
    for a, b in zip(metrics(tmp_path / "full" / first.name), after):
        assert {k: v for k, v in a.items() if k not in TIMING_KEYS} == \
               {k: v for k, v in b.items() if k not in TIMING_KEYS}


@needs_fmnist
def test_unusable_checkpoint_or_other_configuration_trains_the_trial_again(tmp_path, capsys):
    args = _search_args(tmp_path, "--candidates", "22", "--stages", "2", "--tolerance", "100")
    assert cli.main(args) == 0
    capsys.readouterr()
    first = _trial_dir(tmp_path / "s", (32, 32))
    # an interrupted trial whose checkpoint is truncated: trained again from the start, with a message
    (first / "summary.json").unlink()
    with open(first / "last.pt", "r+b") as f:
        f.truncate(100)
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "trial-32_32-seed0: its checkpoint cannot be used" in out and "training it again from the start" in out
    assert len(metrics(first)) == 2 and (first / "summary.json").exists()
    assert out.count("already trained, reusing its result") == 1  # the other trial
    # another trajectory (weight decay) in the same directory: neither the interrupted trial (a loadable last.pt)
    # is resumed nor the finished one reused
    (first / "summary.json").unlink()
    wd = args + ["--set", "optim.weight_decay=0.01"]
    assert cli.main(wd) == 0
    out = capsys.readouterr().out
    assert "already trained" not in out and "resuming" not in out
    assert out.count("trained with another configuration") == 2
    # operational keys (threads, progress, ...) do not count as another configuration
    assert cli.main(wd + ["--set", "train.threads=1"]) == 0
    assert capsys.readouterr().out.count("already trained, reusing its result") == 2


def test_etrain_search_bad_input(tmp_path, capsys):
    cases = [
        (["--candidates", "32", "--stages", "2"], "candidates must lie in [1, final size 32)"),
        (["--candidates", "22", "--tolerance", "-1"], "tolerance must be"),
        (["--candidates", "22", "--stages", "3"], "needs at least 3 epochs"),  # 2 epochs
        (["--candidates", "22,31", "--stages", "2"], "candidates [31] round to [32]"),  # ConvNet sizes are even
        (["--candidates", "22", "--stages", "2", "--curriculum", "none"], "--curriculum does not apply"),
        (["--candidates", "22", "--stages", "2", "--set", "curriculum.replay={24: 2}"],
         "curriculum.replay names sizes [24]"),
        (["--candidates", "22", "--stages", "2", "--metric", "ema_top1", "--set", "train.ema=false"],
         "ema_top1 needs train.ema=true"),
        (["--algorithm", "etpp", "--candidates", "22", "--stages", "2", "--tolerance", "1"],
         "--tolerance applies to --algorithm et / forward"),
        (["--candidates", "22", "--stages", "2", "--cost", "flops"], "--cost applies to --algorithm etpp"),
        (["--algorithm", "etpp", "--candidates", "22", "--stages", "3"],
         "budget of 2 final-size epochs cannot give each of 3 stages a whole epoch"),
        (["--candidates", "22", "--stages", "2", "--seeds", "0,0"], "seeds must be distinct integers"),
        (["--candidates", "22", "--stages", "2", "--seeds", "0,1", "--seed", "3"], "either --seed or --seeds"),
    ]
    for extra, message in cases:
        assert cli.main(_search_args(tmp_path, *extra)) == 2, extra
        assert message in capsys.readouterr().err, extra
    with pytest.raises(SystemExit):
        cli.main(_search_args(tmp_path, "--candidates", "a,b"))
    with pytest.raises(SystemExit):
        cli.main(_search_args(tmp_path, "--candidates", "22", "--algorithm", "greedy"))
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").glob("trial-*"))  # nothing trained
