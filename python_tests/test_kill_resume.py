"""Kill-and-resume soak: a real training process is killed from outside with SIGKILL at random moments (one of them
while a checkpoint is being written) and resumed with ``--resume`` until it finishes; the final model, EMA, optimizer
and metrics equal an uninterrupted run's, bit for bit."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from efficienttrain_ext.engine.checkpoint import load as load_checkpoint

from _etrain_helpers import FMNIST, REPO, TINY_VIT, assert_same_run, etrain_env, run_etrain, tiny_args


def _start(args):
    return subprocess.Popen([sys.executable, "-m", "efficienttrain_ext", *args], cwd=REPO, env=etrain_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_while_writing(proc, run_dir):
    """SIGKILL ``proc`` while it writes a checkpoint or a metrics file (its temporary file exists); False when the
    process ended before one was seen."""
    while proc.poll() is None:
        try:
            if any(n.startswith(".tmp-") for n in os.listdir(run_dir)):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
        except FileNotFoundError:  # the run directory does not exist yet
            pass
        time.sleep(0.0002)
    return False


def _check_files_whole(run_dir):
    # whatever the moment of the kill, the metrics files parse and the checkpoint (if any) verifies
    if os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            for line in f:
                json.loads(line)
    if os.path.exists(os.path.join(run_dir, "last.pt")):
        load_checkpoint(run_dir)


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")
@pytest.mark.parametrize("extra", [[], ["--set", "curriculum.replay=2", "--set", "curriculum.batch_scale=2"]],
                         ids=["plain", "replay+batch_scale"])
def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(tmp_path, extra):
    # a DeiT through a size switch (48 -> 64, pos_embed and its AdamW moments resampled) with the full recipe:
    # RandAugment, mixup/cutmix, random erasing and EMA all draw random numbers, so every RNG must be restored
    common = dict(size=64, epochs=4, subset=64, val=32, batch=16, model=TINY_VIT)
    args = ["--curriculum", "efficienttrain", *extra]
    run_etrain(tiny_args(tmp_path, "full", *args, **common))

    run_dir = tmp_path / "killed"
    fresh = tiny_args(tmp_path, "killed", *args, **common)
    resume = ["train", "--resume", str(run_dir)]
    rng = random.Random(1234)
    # two kills at random moments (start-up takes ~3 s here, an epoch ~1-2 s), then one while a file is written,
    # then another random one; then the run goes to its end
    actions = [rng.uniform(0.5, 8.0), rng.uniform(0.5, 8.0), "write", rng.uniform(0.5, 8.0)]
    kills = writes = 0
    for _ in range(30):
        # no checkpoint yet: start again (a kill before the first checkpoint leaves nothing to resume)
        proc = _start(resume if (run_dir / "last.pt").exists() else fresh + ["--overwrite"])
        action = actions[0] if actions else None
        if action == "write":
            if _kill_while_writing(proc, run_dir):
                kills, writes = kills + 1, writes + 1
                actions.pop(0)
                _check_files_whole(run_dir)
                continue
        elif action is not None:
            actions.pop(0)
            try:
                proc.wait(timeout=action)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                _check_files_whole(run_dir)
                continue
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
        if not actions:
            break
        for f in run_dir.iterdir():  # it finished before the kills ran out: start over, from scratch
            f.unlink()
    assert not actions and writes == 1 and kills >= 2, (actions, kills, writes)
    assert_same_run(tmp_path / "full", run_dir, 4)
