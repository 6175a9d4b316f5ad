"""scripts/evidence_grid.sh keeps the photo grids' finished runs in the repository (``record``) and starts a grid from
them, so a grid outlasts the machine it runs on (docs/results.md)."""

from __future__ import annotations

import os
import subprocess

from _etrain_helpers import REPO

SMALL = ("config.yaml", "schedule.json", "summary.json", "summary.txt", "metrics.csv", "metrics.jsonl")


def _run(tmp_path, *args, **env):
    e = dict(os.environ, OUT=str(tmp_path / "out"), RECORDS=str(tmp_path / "records"))
    e.update(env)
    return subprocess.run(["bash", "scripts/evidence_grid.sh", *args], cwd=REPO, env=e, capture_output=True,
                          text=True, timeout=60)


def _fake_run(run_dir, finished=True, text="a"):
    os.makedirs(run_dir)
    for name in SMALL if finished else ("config.yaml", "metrics.csv"):
        with open(os.path.join(run_dir, name), "w") as f:
            f.write(text)
    with open(os.path.join(run_dir, "last.pt"), "wb") as f:
        f.write(b"checkpoint")


def test_record_keeps_finished_runs_without_checkpoints_and_a_grid_starts_from_them(tmp_path):
    out = tmp_path / "out" / "cifar10"
    _fake_run(out / "cnn" / "none" / "seed0")
    _fake_run(out / "vit" / "efficienttrain++@cost=0.5" / "seed1")
    _fake_run(out / "cnn" / "efficienttrain" / "seed0", finished=False)  # cut: no summary.json
    p = _run(tmp_path, "record", "cifar10")
    assert p.returncode == 0, p.stderr
    assert "recorded 2 finished cifar10 runs" in p.stdout
    rec = tmp_path / "records" / "cifar10"
    assert sorted(os.listdir(rec / "cnn" / "none" / "seed0")) == sorted(SMALL)  # no last.pt
    assert (rec / "vit" / "efficienttrain++@cost=0.5" / "seed1" / "summary.json").is_file()
    assert not (rec / "cnn" / "efficienttrain").exists()

    # a new machine: the grid copies the records into OUT, never over a run already there, then compares
    # (ETRAIN_PYTHON=true: the compare calls do nothing here)
    fresh = tmp_path / "fresh"
    _fake_run(fresh / "cifar10" / "cnn" / "none" / "seed0", text="newer")
    p = _run(tmp_path, "cifar10", OUT=str(fresh), ETRAIN_PYTHON="true")
    assert p.returncode == 0, p.stderr
    assert (fresh / "cifar10" / "vit" / "efficienttrain++@cost=0.5" / "seed1" / "summary.json").read_text() == "a"
    assert (fresh / "cifar10" / "cnn" / "none" / "seed0" / "summary.json").read_text() == "newer"

    bad = _run(tmp_path, "record", "imagenet")
    assert bad.returncode == 2 and "usage" in bad.stderr
