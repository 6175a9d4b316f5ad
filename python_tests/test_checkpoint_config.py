"""Atomic checkpoints, RNG capture, configuration files and overrides."""

from __future__ import annotations

import glob
import os
import random

import numpy as np
import pytest
import torch

from efficienttrain_ext.engine import checkpoint as ck
from efficienttrain_ext.config import ConfigError, apply_overrides, config_to_dict, load_config

from _etrain_helpers import REPO


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ck.save_atomic({"format": ck.FORMAT, "v": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ck.save_atomic({"format": ck.FORMAT, "v": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(ck.load(path)["v"], torch.ones(3))  # the old checkpoint is intact
    assert os.listdir(tmp_path) == ["last.pt"]  # and no temporary file is left behind


def test_rng_state_roundtrip_through_a_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.randn()  # leaves a cached gaussian in NumPy's state
    ck.save_atomic({"format": ck.FORMAT, "rng": ck.rng_state()}, tmp_path / "r.pt")
    expected = (random.random(), np.random.randn(), np.random.rand(), torch.rand(2))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    ck.set_rng_state(ck.load(tmp_path / "r.pt")["rng"])  # weights_only load works
    got = (random.random(), np.random.randn(), np.random.rand(), torch.rand(2))
    assert got[:3] == expected[:3] and torch.equal(got[3], expected[3])


def test_presets_load_and_the_baseline_differs_only_in_curriculum_and_name():
    a = config_to_dict(load_config(os.path.join(REPO, "configs", "fashion_mnist_demo.yaml")))
    b = config_to_dict(load_config(os.path.join(REPO, "configs", "fashion_mnist_demo_baseline.yaml")))
    assert a["curriculum"]["name"] == "efficienttrain" and b["curriculum"]["name"] == "none"
    diff = {(s, k) for s in a for k in a[s] if a[s][k] != b[s][k]}
    assert diff == {("curriculum", "name"), ("train", "name")}
    for path in glob.glob(os.path.join(REPO, "configs", "*.yaml")):
        load_config(path)


def test_overrides_and_errors(tmp_path):
    cfg = load_config(None, ["optim.lr=1e-3", "model.kwargs.depth=2", "data.scale=[0.5, 1]", "model.drop_path=null"])
    assert cfg.optim.lr == 1e-3 and cfg.model.kwargs == {"depth": 2} and cfg.data.scale == [0.5, 1]
    assert cfg.model.drop_path is None
    cfg = apply_overrides(cfg, ["model.kwargs.embed_dim=32"])
    assert cfg.model.kwargs == {"depth": 2, "embed_dim": 32}
    for bad, msg in [("optim.lrr=1", "optim.lrr: unknown key"), ("nope.x=1", "unknown key 'nope'; sections"),
                     ("train.ema=maybe", "train.ema: Input should be a valid boolean"), ("lr=1", "section.key=value"),
                     ("optim.lr=true", "optim.lr: expected a number"), ("train.epochs=0", "train.epochs: .*greater than or equal to 1"),
                     ("train.amp=fp8", "train.amp: Input should be 'auto'"),
                     ("aug.randaugment=rand-m9-q2", "aug.randaugment: .*unknown section key 'q'"),
                     ("curriculum.name=fancy", "unknown curriculum 'fancy'"),
                     ("curriculum.progressive.min_scale=0.5", "applies to the progressive curriculum only"),
                     ("curriculum.filter=lowpass:x", "lowpass:R"),
                     ("curriculum.options={replay: 2}", "typed keys now: curriculum.replay")]:
        with pytest.raises(ConfigError, match=msg):
            load_config(None, [bad])
    p = tmp_path / "c.yaml"
    p.write_text("include: c.yaml\n")
    with pytest.raises(ConfigError, match="include cycle"):
        load_config(str(p))
