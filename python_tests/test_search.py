"""Greedy curriculum search: the algorithm on a known accuracy function, and `etrain search` on Fashion-MNIST."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from efficienttrain_ext import cli
from efficienttrain_ext.curriculum import schedule_from_yaml
from efficienttrain_ext.search import greedy_search, schedule_spec

from _etrain_helpers import FMNIST, metrics, tiny_args


def make_eval(required, calls):
    """Accuracy 80, minus one point per stage whose size is below its required size."""

    def evaluate(sizes):
        calls.append(sizes)
        return 80.0 - sum(s < r for s, r in zip(sizes, required))

    return evaluate


def test_greedy_search_picks_smallest_sizes_that_keep_accuracy():
    calls = []
    res = greedy_search(make_eval([96, 160, 128, 224], calls), [192, 96, 160, 128, 128], 4, 224, tolerance=0.5)
    assert res.sizes == (96, 160, 160, 224)  # stage 3 may not shrink below stage 2's 160
    assert res.accuracy == res.baseline_accuracy == 80.0
    assert calls == [(224,) * 4, (96, 224, 224, 224), (96, 96, 224, 224), (96, 128, 224, 224), (96, 160, 224, 224),
                     (96, 160, 160, 224)]
    assert [t.accepted for t in res.trials] == [False, True, False, False, True, True]
    assert [t.stage for t in res.trials] == [-1, 0, 1, 1, 1, 2]


def test_tolerance_and_stop_rule():
    calls = []
    # every stage below 224 costs a point: with tolerance 1 one shrunken stage is allowed, not two
    res = greedy_search(make_eval([224] * 4, calls), [128, 192], 4, 224, tolerance=1.0)
    assert res.sizes == (128, 224, 224, 224) and res.accuracy == 79.0
    # stage 2 found nothing, so stage 3 keeps the final size without being tried
    assert calls == [(224,) * 4, (128, 224, 224, 224), (128, 128, 224, 224), (128, 192, 224, 224)]
    calls.clear()
    res = greedy_search(make_eval([224] * 3, calls), [128], 3, 224, tolerance=0.0)
    assert res.sizes == (224, 224, 224) and len(calls) == 2


def test_each_size_list_is_trained_once_and_costs_are_kept():
    seen = []

    def evaluate(sizes):
        seen.append(sizes)
        return 70.0, sum(s * s for s in sizes) / (len(sizes) * 224 ** 2)

    res = greedy_search(evaluate, [96, 160], 3, 224)
    assert len(seen) == len(set(seen)) == len(res.trials)
    assert res.sizes == (96, 96, 224)
    assert res.trials[-1].cost == pytest.approx((2 * 96 ** 2 + 224 ** 2) / (3 * 224 ** 2))


@pytest.mark.parametrize("kwargs,match", [
    (dict(candidates=[], stages=3), "at least one size"),
    (dict(candidates=[224], stages=3), r"candidates must lie in \[1, final size 224\)"),
    (dict(candidates=[0, 96], stages=3), "candidates must lie"),
    (dict(candidates=[96], stages=1), "stages must be an integer >= 2"),
    (dict(candidates=[96], stages=3, tolerance=-1), "tolerance must be a finite number >= 0"),
    (dict(candidates=[96], stages=3, tolerance=float("nan")), "tolerance must be a finite number >= 0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        greedy_search(lambda s: 1.0, final_size=224, **kwargs)


def test_schedule_spec_is_a_valid_schedule():
    s = schedule_from_yaml(schedule_spec([96, 160, 224]), 9, 224)
    assert [(st.start, st.end, st.size) for st in s.stages] == [(0, 3, 96), (3, 6, 160), (6, 9, 224)]


def _search_args(tmp_path, *extra):
    args = tiny_args(tmp_path, "s", epochs=2, subset=32, val=32)
    return ["search", *args[1:], *extra]


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")
def test_etrain_search_on_fashion_mnist(tmp_path, capsys):
    # tolerance 100: every candidate qualifies, so the result is known: 22 for the first stage
    args = _search_args(tmp_path, "--candidates", "22", "--stages", "2", "--tolerance", "100")
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    d = tmp_path / "s"
    res = json.loads((d / "search.json").read_text())
    assert res["best_sizes"] == [22, 32] and [t["sizes"] for t in res["trials"]] == [[32, 32], [22, 32]]
    for t in res["trials"]:  # each trial is a real run whose final top-1 the search recorded
        summary = json.loads((d / ("trial-" + "_".join(map(str, t["sizes"]))) / "summary.json").read_text())
        assert summary["final"]["top1"] == t["accuracy"]
        assert summary["predicted_cost"] == pytest.approx(t["cost"])
    assert res["trials"][1]["cost"] < 1.0 == pytest.approx(res["trials"][0]["cost"])
    best = schedule_from_yaml(str(d / "best_schedule.yaml"), 2, 32)
    assert [st.size for st in best.stages] == [22, 32]
    assert yaml.safe_load((d / "best_schedule.yaml").read_text())["name"] == "searched"
    with open(d / "search.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "search: best sizes 22-32" in out
    # started again in the same directory: the finished trials are reused, not retrained
    assert cli.main(args) == 0
    assert capsys.readouterr().out.count("already trained, reusing its result") == 2


def test_etrain_search_bad_input(tmp_path, capsys):
    assert cli.main(_search_args(tmp_path, "--candidates", "32", "--stages", "2")) == 2
    assert "candidates must lie in [1, final size 32)" in capsys.readouterr().err
    assert cli.main(_search_args(tmp_path, "--candidates", "22", "--tolerance", "-1")) == 2
    assert "tolerance must be" in capsys.readouterr().err
    assert cli.main(_search_args(tmp_path, "--candidates", "22", "--stages", "3")) == 2  # 2 epochs
    assert "needs at least 3 epochs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(_search_args(tmp_path, "--candidates", "a,b"))


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")
def test_etrain_search_retrains_trials_of_another_configuration(tmp_path, capsys):
    args = _search_args(tmp_path, "--candidates", "22", "--stages", "2", "--tolerance", "100")
    assert cli.main(args) == 0
    first = json.loads((tmp_path / "s" / "search.json").read_text())
    capsys.readouterr()
    # another seed (as docs/training.md advises) in the same directory: the old trials must not be reused
    assert cli.main(args + ["--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "already trained" not in out and out.count("trained with another configuration") == 2
    second = json.loads((tmp_path / "s" / "search.json").read_text())
    assert [t["accuracy"] for t in second["trials"]] != [t["accuracy"] for t in first["trials"]]
    # operational keys (threads, progress, ...) do not count as another configuration
    assert cli.main(args + ["--seed", "1", "--set", "train.threads=1"]) == 0
    assert capsys.readouterr().out.count("already trained, reusing its result") == 2


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")
def test_etrain_search_replay_per_size_applies_where_the_trial_has_that_size(tmp_path):
    # {22: 2} names a candidate: the all-32 baseline has no stage at 22 and must still run
    args = _search_args(tmp_path, "--candidates", "22", "--stages", "2", "--tolerance", "100",
                        "--set", "curriculum.replay={22: 2}")
    assert cli.main(args) == 0
    d = tmp_path / "s"
    assert [r["replay"] for r in metrics(d / "trial-32_32")] == [1, 1]
    assert [r["replay"] for r in metrics(d / "trial-22_32")] == [2, 1]


def test_etrain_search_bad_candidates_and_options(tmp_path, capsys):
    # 31 rounds to 32 (ConvNet sizes are even): a clear error, not a traceback
    assert cli.main(_search_args(tmp_path, "--candidates", "22,31", "--stages", "2")) == 2
    assert "candidates [31] round to [32]" in capsys.readouterr().err
    assert cli.main(_search_args(tmp_path, "--candidates", "22", "--stages", "2", "--curriculum", "none")) == 2
    assert "--curriculum does not apply" in capsys.readouterr().err
    assert cli.main(_search_args(tmp_path, "--candidates", "22", "--stages", "2",
                                 "--set", "curriculum.replay={24: 2}")) == 2
    assert "curriculum.replay names sizes [24]" in capsys.readouterr().err
    assert cli.main(_search_args(tmp_path, "--candidates", "22", "--stages", "2", "--metric", "ema_top1",
                                 "--set", "train.ema=false")) == 2
    assert "ema_top1 needs train.ema=true" in capsys.readouterr().err
    assert not any((tmp_path / "s").glob("trial-*"))  # nothing trained
