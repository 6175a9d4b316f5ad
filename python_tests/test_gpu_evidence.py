"""scripts/gpu_evidence.sh without a GPU: its bash parses, the `etrain compare` commands it would run load as valid
configurations (device cache, bf16, the four curricula), and its report turns run folders into the tables the issue
asks for (per run and per stage, speed-up against the FLOP prediction), checked against hand-computed values."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess

import pytest

from efficienttrain_ext.config import load_config
from efficienttrain_ext.engine.compare import parse_spec

from _etrain_helpers import REPO

SCRIPT = os.path.join(REPO, "scripts", "gpu_evidence.sh")


def _report_module():
    spec = importlib.util.spec_from_file_location("gpu_evidence_report",
                                                  os.path.join(REPO, "scripts", "gpu_evidence_report.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_script_parses_and_its_commands_are_valid_configurations(tmp_path):
    subprocess.run(["bash", "-n", SCRIPT], check=True)
    proc = subprocess.run(["bash", SCRIPT, str(tmp_path / "out")], env=dict(os.environ, DRY_RUN="1", SEEDS="0,1"),
                          capture_output=True, text=True, check=True)
    commands = [shlex.split(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [c[:2] for c in commands] == [["etrain", "compare"]] * 2
    for cmd in commands:
        cfg_path = os.path.join(REPO, cmd[cmd.index("-c") + 1])
        sets = [cmd[k + 1] for k, a in enumerate(cmd) if a == "--set"]
        curricula = cmd[cmd.index("--curricula") + 1].split(",")
        assert curricula == ["none", "efficienttrain", "efficienttrain++", "none@cost=efficienttrain"]
        assert cmd[cmd.index("--seeds") + 1] == "0,1"
        for spec in curricula:
            parse_spec(spec)
        if not os.path.isfile(cfg_path):  # the CIFAR-10 presets come with the cifar10 dataset (issue 25)
            continue
        cfg = load_config(cfg_path, sets)
        assert cfg.data.device_cache and cfg.train.amp == "bf16" and cfg.train.device == "cuda"
        assert cfg.data.root.endswith(".carry/cifar10-jpg.tar.gz") and os.path.isabs(cfg.data.root)
    bad = subprocess.run(["bash", SCRIPT, str(tmp_path / "out")], env=dict(os.environ, DRY_RUN="1", GRIDS="resnet50"),
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown grid resnet50" in bad.stderr


def _write_run(d, stages, rows, predicted, baseline_epochs=3):
    os.makedirs(d)
    with open(os.path.join(d, "schedule.json"), "w") as f:
        json.dump({"epochs": len(rows) if rows else 0, "final_size": 32, "stages": stages,
                   "predicted_cost": predicted, "baseline_epochs": baseline_epochs}, f)
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _row(epoch, stage, size, secs, top1, images=1000):
    return {"epoch": epoch, "stage": stage, "size": size, "train_images": images, "train_time": secs, "top1": top1,
            "ema_top1": top1 + 1, "wall_time": 10.0 * epoch}


def test_report_tables_on_run_folders(tmp_path):
    runs = tmp_path / "runs"
    # baseline: 3 epochs at 32; the first (warm-up) epoch slow, then 1000 images in 2 s: 500 img/s
    _write_run(runs / "resnet18" / "none" / "seed0", [{"size": 32, "relative_flops": 1.0}],
               [_row(1, 0, 32, 5.0, 50.0), _row(2, 0, 32, 2.0, 60.0), _row(3, 0, 32, 2.0, 70.0)], 1.0)
    # curriculum: 2 epochs at 16 (predicted 4x cheaper per image) at 1000 img/s after warm-up, then 1 at 32
    _write_run(runs / "resnet18" / "efficienttrain" / "seed0",
               [{"size": 16, "relative_flops": 0.25}, {"size": 32, "relative_flops": 1.0}],
               [_row(1, 0, 16, 3.0, 40.0), _row(2, 0, 16, 1.0, 55.0), _row(3, 1, 32, 2.5, 68.0)], 0.5)
    # the baseline cut to 2 epochs: its own prediction is 1.0 (of its 2 epochs), 2/3 of the grid's baseline
    _write_run(runs / "resnet18" / "none@cost=efficienttrain" / "seed0", [{"size": 32, "relative_flops": 1.0}],
               [_row(1, 0, 32, 5.0, 50.0), _row(2, 0, 32, 2.0, 60.0)], 1.0, baseline_epochs=2)
    mod = _report_module()
    found = mod.collect_runs([str(runs)])
    assert [(r["grid"], r["curriculum"], r["seed"]) for r in found] == [
        ("resnet18", "none", 0), ("resnet18", "efficienttrain", 0), ("resnet18", "none@cost=efficienttrain", 0)]
    by_run = {r["curriculum"]: r for r in mod.run_rows(found)}
    assert by_run["none"]["train_time"] == 9.0 and by_run["none"]["measured_cost"] == 1.0
    assert by_run["efficienttrain"]["measured_cost"] == pytest.approx(6.5 / 9.0)
    assert by_run["efficienttrain"]["epochs"] == "3/3" and by_run["efficienttrain"]["top1"] == 68.0
    assert by_run["efficienttrain"]["predicted_cost"] == 0.5
    assert by_run["none@cost=efficienttrain"]["predicted_cost"] == pytest.approx(2 / 3)
    assert by_run["none@cost=efficienttrain"]["measured_cost"] == pytest.approx(7 / 9)
    stages = {(s["curriculum"], s["stage"]): s for s in mod.stage_rows(found)}
    assert stages["none", 0]["img_s"] == pytest.approx(500.0) and stages["none", 0]["warm"]
    st = stages["efficienttrain", 0]
    # 1000 img/s against the baseline's 500 at the final size: measured 2x, predicted 4x, ratio 0.5
    assert st["img_s"] == pytest.approx(1000.0) and st["reference"] == "none"
    assert st["speedup"] == pytest.approx(2.0) and st["predicted_speedup"] == pytest.approx(4.0)
    assert st["ratio"] == pytest.approx(0.5)
    # the final stage has a single epoch that is not the run's first: 1000 / 2.5 s = 400 img/s, 0.8 of the baseline
    assert stages["efficienttrain", 1]["ratio"] == pytest.approx(0.8)
    text = mod.report([str(runs)])
    assert "| resnet18 | efficienttrain | 0 | 0 | 16 | 1-2 | 4.0 | 1000 | 2.000 | 4.000 | 0.500 |" in text
    out = tmp_path / "t.md"
    assert mod.main([str(runs), "--output", str(out)]) == 0 and out.read_text().strip() == text
    assert mod.report([str(tmp_path / "empty")]).startswith("no runs found")


def test_gpu_steps_keep_to_the_deadline_and_pack_no_checkpoints(tmp_path):
    # the step machinery of scripts/gpu_check.sh and gpu_evidence.sh (scripts/gpu_steps.sh): a step's limit is cut
    # to the call's deadline, a step with under 20 s left is skipped, a step past its limit is stopped, and the
    # archive that comes back leaves checkpoints out (they would make it too big to return)
    fake_py = tmp_path / "nopydantic"
    fake_py.write_text("#!/bin/sh\nexit 1\n")
    fake_py.chmod(0o755)
    script = f"""
    set -uo pipefail
    out={tmp_path}/out logs={tmp_path}/logs failed=() deadline=100
    mkdir -p "$out" "$logs/runs/a"
    cd {REPO}
    . scripts/gpu_steps.sh
    pack() {{ pack_logs "$out/r.tgz" -C "$logs" .; }}
    echo '{{}}' > "$logs/runs/a/metrics.jsonl"
    head -c 4096 /dev/zero > "$logs/runs/a/last.pt"
    SECONDS=0
    step quick 300 quick.log echo hello
    step slow 1 slow.log sleep 30
    SECONDS=70
    step late 10 late.log echo never
    echo "failed: ${{failed[*]}}"
    cd {tmp_path} && need_pydantic {fake_py} "$logs" || echo "no pydantic: stop"
    """
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "=== quick (limit 85 s)" in proc.stdout and "hello" in proc.stdout
    summary = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    assert summary[0].startswith("=== quick: ok")
    assert summary[1].startswith("=== slow: FAILED (exit 124, time limit)")
    assert summary[2] == "=== late: skipped (deadline 100 s reached)"
    assert "never" not in proc.stdout and "failed: slow late (skipped)" in proc.stdout
    assert "pydantic does not import" in summary[3] and "no pydantic: stop" in proc.stdout
    listed = subprocess.run(["tar", "-tzf", str(tmp_path / "out" / "r.tgz")], capture_output=True, text=True,
                            check=True).stdout.split()
    assert "./runs/a/metrics.jsonl" in listed and "./quick.log" in listed and "./slow.log" in listed
    assert not [n for n in listed if n.endswith(".pt")] and not (tmp_path / "out" / "r.tgz.part").exists()
