"""The documented examples run: examples/plain_loop.py and examples/lightning_train.py on a tiny ImageFolder."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from _etrain_helpers import REPO, etrain_env, make_image_folder

TINY_VIT = "{'depth': 1, 'embed_dim': 32, 'num_heads': 2, 'img_size': 64}"


def _run(script, tmp_path, *args):
    data = make_image_folder(tmp_path / "data", per_class=8, size=72)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "examples", script), "--data", str(data), *args],
                          cwd=tmp_path, env=etrain_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_plain_loop_example(tmp_path):
    out = _run("plain_loop.py", tmp_path, "--model", "deit_tiny_patch16_224", "--model-kwargs", TINY_VIT,
               "--size", "64", "--epochs", "5", "--batch-size", "4", "--workers", "0")
    rows = re.findall(r"epoch (\d+)/5 B (\d+) m ([\d.]+) loss [\d.]+ top1 ([\d.]+)", out)
    assert [int(b) for _, b, _, _ in rows] == [48, 48, 48, 48, 64]  # efficienttrain at 64 for a patch-16 ViT
    # last step of each epoch (4 steps of 4 from 16 images): m = 9 (4e + 3) / 20
    assert [float(m) for _, _, m, _ in rows] == pytest.approx([9 * (4 * e + 3) / 20 for e in range(5)], abs=0.01)


def test_lightning_example(tmp_path):
    pytest.importorskip("lightning")
    _run("lightning_train.py", tmp_path, "--model", "deit_tiny_patch16_224", "--model-kwargs", TINY_VIT,
         "--size", "64", "--epochs", "3", "--batch-size", "4", "--workers", "0")
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
