"""scripts/bench_gpu.py --augment runs end to end (tiny, on the CPU; the same code times the GPU with CUDA events)
and reports each policy's host cost per batch on its own line, in the table and in the JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "bench_gpu.py")
POLICIES = ("rand-m9-mstd0.5", "rand-m9-mstd0.5-inc1", "rand-m9-mstd0.5-t3aw")


def _run(*args):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, SCRIPT, "--augment", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_bench_augment_tiny_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    p = _run("--device", "cpu", "--no-compare", "--batch", "3", "--size", "24", "--iters", "2", "--json", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    for policy in POLICIES:
        m = re.search(rf"^host cost per batch, etrain RandAugment {re.escape(policy)}: ([0-9.]+) ms", p.stdout, re.M)
        assert m and float(m.group(1)) > 0, p.stdout
    assert "| case | ms / batch | img/s | host ms / batch |" in p.stdout
    assert "torchvision" not in p.stdout and "timm RandAugment" not in p.stdout  # --no-compare
    doc = json.loads(out.read_text())
    assert doc["batch"] == 3 and doc["size"] == 24 and doc["iters"] == 2 and doc["device"].startswith("CPU")
    assert [r["case"].split(" (")[0] for r in doc["rows"]] == [f"etrain RandAugment {p}" for p in POLICIES]
    for r in doc["rows"]:
        assert r["ms"] > 0 and r["host_ms"] > 0 and abs(r["img_s"] - 3 / (r["ms"] * 1e-3)) < 1e-6 * r["img_s"]
        assert r["gpu_equals_cpu"] is None  # no GPU comparison on a CPU run


def test_bench_augment_bad_arguments():
    p = _run("--device", "cpu", "--iters", "0")
    assert p.returncode == 2 and "--iters, --batch and --size must be >= 1" in p.stderr
    if not torch.cuda.is_available():
        p = _run("--device", "cuda", "--no-compare")
        assert p.returncode == 2 and "no CUDA GPU is visible" in p.stderr
