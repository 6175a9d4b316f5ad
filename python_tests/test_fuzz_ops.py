"""Bad input, at random: at least 1,000 random calls per op family (lowfreq_crop/pad/lowpass, RandAugment, every
augment.functional op) with random shapes, dtypes, strides, sizes, magnitudes, NaN and empty tensors. Every call
returns a tensor of the right shape and dtype or raises ValueError/TypeError/RuntimeError with a message; the calls
run in a subprocess, so a crash or a hang fails this test instead of killing the suite."""

from __future__ import annotations

import os
import subprocess
import sys

from fuzz_ops import FAMILIES

from _etrain_helpers import REPO

CALLS = 1000


def test_random_calls_return_or_raise_a_clear_error():
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.path.dirname(__file__), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "fuzz_ops.py"), str(CALLS), "0"],
                          env=env, capture_output=True, text=True, timeout=900)
    summary = [line for line in proc.stdout.splitlines() if " calls, " in line]
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert len(summary) == len(FAMILIES) and all(f"{CALLS} calls" in line for line in summary), proc.stdout
    # the generator must also reach the ops' working paths, not only their argument checks
    for line in summary:
        returned = int(line.split(", ")[1].split()[0])
        assert returned >= CALLS // 10, line
