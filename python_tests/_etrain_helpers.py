"""Shared helpers for the driver tests: tiny-run arguments, subprocess runs, temporary ImageFolders."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from efficienttrain_ext.engine.checkpoint import load as load_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FMNIST = "/usr/share/datasets/fashion-mnist"
TINY_VIT = ["--model", "deit_tiny_patch16_224", "--set", "model.kwargs={depth: 1, embed_dim: 32, num_heads: 2}"]


def tiny_args(out, name, *extra, subset=64, val=64, batch=16, epochs=3, size=32, model=("--model", "resnet10t")):
    return [
        "train", *model, "--epochs", str(epochs), "--final-size", str(size), "--batch-size", str(batch), "--workers", "0",
        "--output", str(out), "--name", name,
        "--set", f"data.train_subset={subset}", "--set", f"data.val_subset={val}",
        "--set", "train.progress=false", "--set", "train.deterministic=true", *extra,
    ]


def etrain_env(env=None):
    """The environment of an `etrain` subprocess whose results are compared bit for bit with another's."""
    # runs compared bit for bit must reduce in the same order: a fixed thread count (no dynamic teams under load)
    # and MKL's strict conditional numerical reproducibility (otherwise its kernels depend on memory alignment,
    # which differs between an uninterrupted and a resumed process)
    e = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="2",
             OMP_DYNAMIC="FALSE", MKL_DYNAMIC="FALSE", MKL_CBWR="AUTO,STRICT")
    e.update(env or {})
    return e


def run_etrain(args, env=None, check=True, timeout=300):
    """`etrain` in a fresh interpreter (for runs that must die or start clean)."""
    proc = subprocess.run([sys.executable, "-m", "efficienttrain_ext", *args], cwd=REPO, env=etrain_env(env),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"etrain {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_torchrun(args, timeout=300, path=(), check=True):
    """`python -m efficienttrain_ext ARGS` as 2 gloo processes under torchrun (``path``: folders put before the
    repository on PYTHONPATH); fails the test on a non-zero exit when ``check``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*map(str, path), REPO]), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "efficienttrain_ext", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


# facts of the process, not of the training: they may differ between a run and its resume
TIMING_KEYS = {"train_time", "train_cpu_time", "img_s", "wall_time", "train_time_total", "compile_time", "compilations"}


def assert_same_run(run_a, run_b, epochs):
    """Two run directories hold the same training: metrics apart from timings, and the final model, EMA and
    optimizer state bit for bit."""
    full, resumed = metrics(run_a), metrics(run_b)
    assert len(full) == len(resumed) == epochs
    for a, b in zip(full, resumed):
        assert {k: v for k, v in a.items() if k not in TIMING_KEYS} == \
               {k: v for k, v in b.items() if k not in TIMING_KEYS}
    ca, cb = load_checkpoint(run_a), load_checkpoint(run_b)
    for part in ("model", "ema"):
        for k, v in (ca[part] or {}).items():
            assert torch.equal(v, cb[part][k]), (part, k)
    for pid, st in ca["optimizer"]["state"].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(cb["optimizer"]["state"][pid][k])), (pid, k)


def make_image_folder(root, classes=("circle", "square"), per_class=12, size=40, seed=0):
    """Two visually distinct classes of small RGB images under root/{train,val}/<class>/."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("val", per_class // 2)):
        for ci, cls in enumerate(classes):
            d = os.path.join(root, split, cls)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                c = size // 2
                yy, xx = np.mgrid[:size, :size]
                mask = ((yy - c) ** 2 + (xx - c) ** 2 < (size // 3) ** 2) if ci == 0 else \
                    ((abs(yy - c) < size // 3) & (abs(xx - c) < size // 3))
                img[mask] = (200, 80 + 100 * ci, 40)
                Image.fromarray(img).save(os.path.join(d, f"{i}.png"))
    return root


def make_photo_folder(root, per_class=6, val_per_class=2, sizes=((80, 60), (60, 80), (72, 72)), classes=None,
                      seed=0):
    """An ImageFolder of real JPEG photos (scripts/make_photo_folder.py), small by default for fast tests."""
    spec = importlib.util.spec_from_file_location("make_photo_folder",
                                                  os.path.join(REPO, "scripts", "make_photo_folder.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_photo_folder(str(root), per_class, val_per_class, sizes=sizes, seed=seed,
                                  classes=classes or ("astronaut", "chelsea", "coffee"))
