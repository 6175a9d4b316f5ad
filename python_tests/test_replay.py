"""Replay buffer (EfficientTrain++): the batch order, the schedule option, and a driver run that loads half."""

from __future__ import annotations

import os
from collections import Counter

import pytest
import torch

from efficienttrain_ext import cli
from efficienttrain_ext.config import load_config
from efficienttrain_ext.curriculum import (
    Schedule,
    ScheduleError,
    Stage,
    build_schedule,
    schedule_from_yaml,
    schedule_table,
    with_replay,
)
from efficienttrain_ext.data import FashionMNIST
from efficienttrain_ext.curriculum.replay import SampleReplayBuffer, loads_needed, replay_batches
from efficienttrain_ext.errors import ConfigError

from _etrain_helpers import FMNIST, REPO, metrics, tiny_args


class CountingIter:
    """An iterator over 0..n-1 that counts how many items were pulled from it."""

    def __init__(self, n):
        self.n, self.pulled = n, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.pulled >= self.n:
            raise StopIteration
        self.pulled += 1
        return self.pulled - 1


def test_replay_one_passes_through_without_drawing_random_numbers():
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    src = CountingIter(10)
    assert list(replay_batches(src, 1, 7, g)) == [(i, True) for i in range(7)]
    assert src.pulled == 7 and torch.equal(g.get_state(), state)


@pytest.mark.parametrize("replay,steps", [(2, 8), (3, 10), (4, 16), (3, 1), (5, 23)])
def test_each_loaded_batch_is_used_replay_times(replay, steps):
    src = CountingIter(1000)
    out = list(replay_batches(src, replay, steps, torch.Generator().manual_seed(0)))
    assert len(out) == steps
    assert src.pulled == loads_needed(steps, replay)  # only what the steps need is loaded
    uses = Counter(b for b, _ in out)
    assert sorted(uses) == list(range(src.pulled))
    # every batch r times, except the last one(s) when steps is not a multiple of r
    assert sum(uses.values()) == steps and all(1 <= c <= replay for c in uses.values())
    assert sum(c == replay for c in uses.values()) >= steps // replay - (replay - 1)
    # `fresh` marks exactly the first use of each batch
    firsts = [i for i, (b, f) in enumerate(out) if f]
    assert [out[i][0] for i in firsts] == sorted(uses, key=lambda b: next(i for i, (c, _) in enumerate(out) if c == b))
    assert len(firsts) == len(uses)
    # a batch is used within its buffer of `replay` loads: no use lags far behind its load
    for i, (b, _) in enumerate(out):
        assert b // replay == i // (replay * replay)


def test_order_is_shuffled_and_seeded():
    a = [b for b, _ in replay_batches(range(100), 4, 64, torch.Generator().manual_seed(1))]
    b = [b for b, _ in replay_batches(range(100), 4, 64, torch.Generator().manual_seed(1))]
    c = [b for b, _ in replay_batches(range(100), 4, 64, torch.Generator().manual_seed(2))]
    assert a == b and a != c
    consecutive = [i // 4 for i in range(64)]
    assert a != consecutive  # not merely each batch r times in a row


def test_short_loader_and_bad_replay():
    assert len(list(replay_batches(range(3), 2, 100))) == 6  # the source runs dry first
    assert list(replay_batches(range(3), 2, 0)) == []
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="replay must be an integer >= 1"):
            list(replay_batches(range(3), bad, 4))


def test_replay_option_on_curricula(tmp_path):
    s = build_schedule("efficienttrain", 300, 224, replay=2)
    assert [(st.size, st.replay) for st in s.stages] == [(160, 2), (192, 2), (224, 1)]
    s = build_schedule("efficienttrain++", 300, 224, replay={96: 4, 160: 2})
    assert {(st.size, st.replay) for st in s.stages} == {(96, 4), (160, 2), (224, 1)}
    assert "replay" in schedule_table(s)
    assert "replay" not in schedule_table(build_schedule("efficienttrain", 300, 224))
    assert Schedule.from_dict(s.to_dict()) == s
    old = s.to_dict()
    for st in old["stages"]:
        del st["replay"]  # schedule.json written before replay existed
    assert all(st.replay == 1 for st in Schedule.from_dict(old).stages)
    with pytest.raises(ScheduleError, match=r"replay given for sizes \[128\]"):
        build_schedule("efficienttrain", 300, 224, replay={128: 2})
    for bad in (0, 2.5, True):
        with pytest.raises(ScheduleError, match="integer >= 1"):
            build_schedule("efficienttrain", 300, 224, replay=bad)
    with pytest.raises(ScheduleError, match="unknown rule 'x'"):
        build_schedule("efficienttrain", 300, 224, replay="x")
    with pytest.raises(ScheduleError, match="replay must be an integer"):
        Schedule("s", 2, 32, (Stage(0, 2, 32, None, 0),))
    base = build_schedule("none", 10, 64)
    assert with_replay(base, 3).stages[0].replay == 1  # the final size keeps 1 unless named
    assert with_replay(base, {64: 3}).stages[0].replay == 3

    p = tmp_path / "s.yaml"
    p.write_text("stages:\n  - {fraction: 0.5, scale: 0.5, replay: 3}\n  - {fraction: 0.5, scale: 1.0}\n")
    s = schedule_from_yaml(str(p), 10, 128)
    assert [(st.size, st.replay) for st in s.stages] == [(64, 3), (128, 1)]
    p.write_text("stages:\n  - {fraction: 1.0, scale: 1.0, replay: 0}\n")
    with pytest.raises(ScheduleError, match="stage 0: replay must be an integer >= 1"):
        schedule_from_yaml(str(p), 10, 128)
    with pytest.raises(ScheduleError, match="does not take the options"):
        build_schedule(str(p), 10, 128, min_scale=0.5)


def _count_reads(monkeypatch) -> Counter:
    """Image reads of the Fashion-MNIST datasets during a run, per dataset length (train vs validation)."""
    reads = Counter()
    orig = FashionMNIST.__getitem__

    def counting(self, i):
        reads[len(self)] += 1
        return orig(self, i)

    monkeypatch.setattr(FashionMNIST, "__getitem__", counting)
    return reads


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")
def test_driver_loads_one_in_replay_batches(tmp_path, monkeypatch):
    reads = _count_reads(monkeypatch)
    args = tiny_args(tmp_path, "rp", "--curriculum", "efficienttrain", "--set", "curriculum.replay=2",
                     subset=64, val=32)
    assert cli.main(args) == 0
    rows = metrics(tmp_path / "rp")
    # 3 epochs at final 32: B = 22, 22, 32; replay 2 below the final size
    assert [(r["size"], r["replay"]) for r in rows] == [(22, 2), (22, 2), (32, 1)]
    assert all(r["train_images"] == 64 for r in rows)  # 4 optimisation steps of 16 in every epoch
    assert [r["loaded_images"] for r in rows] == [32, 32, 64]
    # what the training split actually read (the validation split is evaluated every epoch in full)
    train_reads = reads[60000]  # the subsets index the full splits (60,000 train, 10,000 test images)
    assert train_reads == 32 + 32 + 64


# ----- curriculum.replay_mode: authors (EfficientTrain++'s released buffer, LeapLabTHU/EfficientTrain engine_buffer.py)


def test_sample_buffer_is_fifo_over_loaded_batches_and_draws_with_replacement():
    g = torch.Generator().manual_seed(0)
    buf = SampleReplayBuffer(3, g)
    for b in range(4):  # batch b holds labels 10b .. 10b+7; capacity 3: batch 0 leaves when batch 3 comes
        buf.add(torch.full((8, 3, 4, 4), float(b)), torch.arange(10 * b, 10 * b + 8))
    assert (buf.batches, len(buf)) == (3, 24)
    x, y = buf.draw(24_000)
    assert x.dtype == torch.float16 and x.device.type == "cpu" and x.shape == (24_000, 3, 4, 4)
    assert torch.equal(x[:, 0, 0, 0].long(), y // 10)  # each image comes with its own label
    counts = torch.bincount(y, minlength=40)
    assert counts[:10].sum() == 0  # the oldest batch is gone
    held = counts[10:38][torch.arange(28) % 10 < 8]
    # uniform with replacement over the 24 held images: 1000 expected each; 5 sigma of a binomial(24000, 1/24)
    assert (held - 1000).abs().max() < 5 * (24_000 / 24 * (1 - 1 / 24)) ** 0.5
    assert buf.draw(0)[0].shape == (0, 3, 4, 4)
    with pytest.raises(ValueError, match="empty"):
        SampleReplayBuffer(2).draw(1)
    with pytest.raises(ValueError, match="capacity must be an integer >= 1"):
        SampleReplayBuffer(0)
    with pytest.raises(ValueError, match="differ in count"):
        buf.add(torch.zeros(2, 3, 4, 4), torch.zeros(3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_sample_buffer_on_cuda_draws_what_the_host_buffer_draws():
    # CUDA batches: async copies to pinned host memory, draws gathered from the latest batch's device copy and from
    # the host, returned on the device; the same seed draws the same images as the all-CPU buffer.
    cpu, gpu = SampleReplayBuffer(3, torch.Generator().manual_seed(5)), SampleReplayBuffer(3, torch.Generator().manual_seed(5))
    for b in range(5):
        x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(b))
        y = torch.arange(16) + 100 * b
        cpu.add(x, y)
        gpu.add(x.cuda(), y.cuda())
        for n in (0, 1, 40):
            (cx, cy), (gx, gy) = cpu.draw(n), gpu.draw(n)
            assert gx.is_cuda and gy.is_cuda and gx.dtype == torch.float16
            assert torch.equal(gx.cpu(), cx) and torch.equal(gy.cpu(), cy)
    assert all(t.is_pinned() for t in gpu._x + gpu._y)


def test_authors_replay_preset_is_the_released_scripts():
    """configs/imagenet_deit_small_etpp.yaml against LeapLabTHU/EfficientTrain _ET_pp_wReplay_main_deitS.py:
    replay_times_list = [4]*2 + [2]*4 + [1]*4, replay_buffer_size_list = [1920]*2 + [256]*4 + [0]*4 over
    res_list = [96]*2 + [160]*4 + [192]*2 + [224]*2; bs_list 512 per GPU on 8 GPUs (effective batch 4096), --lr 4e-3;
    --batch_size int(bs / replay): 128 images loaded per step at 96 px, 256 at 160 px."""
    cfg = load_config(os.path.join(REPO, "configs", "imagenet_deit_small_etpp.yaml"))
    c = cfg.curriculum
    assert (c.name, c.replay_mode, c.replay, c.replay_buffer) == ("efficienttrain++", "authors", {96: 4, 160: 2},
                                                                 {96: 1920, 160: 256})
    assert (cfg.train.batch_size * 8, cfg.optim.base_lr, cfg.optim.base_batch) == (4096, 4e-3, 4096)
    schedule = build_schedule("efficienttrain++", 300, 224, family="deit", replay=c.replay)
    loaded = {st.size: cfg.train.batch_size // st.replay for st in schedule.stages}
    assert loaded == {96: 128, 160: 256, 192: 512, 224: 512}
    # erasing after the resize, as in the released ++ code (datasets_buffer.py inserts the resize before erasing)
    assert cfg.aug.erasing_order == "after_crop"


def test_authors_replay_config_errors():
    with pytest.raises(ConfigError, match="replay_buffer applies to curriculum.replay_mode=authors"):
        load_config(None, ["curriculum.replay=2", "curriculum.replay_buffer=8"])
    with pytest.raises(ConfigError, match="needs curriculum.replay_buffer"):
        load_config(None, ["curriculum.replay=2", "curriculum.replay_mode=authors"])
    with pytest.raises(ConfigError, match="buffer capacities must be integers >= 1"):
        load_config(None, ["curriculum.replay=2", "curriculum.replay_mode=authors", "curriculum.replay_buffer=0"])
    with pytest.raises(ConfigError, match="curriculum.replay_mode"):
        load_config(None, ["curriculum.replay_mode=fresh"])


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")
def test_driver_authors_mode_loads_batch_over_r_per_step(tmp_path, monkeypatch, capsys):
    reads = _count_reads(monkeypatch)
    authors = ["--curriculum", "efficienttrain", "--set", "curriculum.replay=2", "--set",
               "curriculum.replay_mode=authors", "--set", "curriculum.replay_buffer=8"]
    assert cli.main(tiny_args(tmp_path, "au", *authors, subset=64, val=32)) == 0
    rows = metrics(tmp_path / "au")
    assert [(r["size"], r["replay"]) for r in rows] == [(22, 2), (22, 2), (32, 1)]
    # every step trains a batch of 16: 8 fresh images + 8 drawn from the buffer below the final size
    assert all(r["train_images"] == 64 for r in rows) and [r["batch"] for r in rows] == [16, 16, 16]
    assert [r["loaded_images"] for r in rows] == [32, 32, 64]
    assert reads[60000] == 32 + 32 + 64
    # a stage size without a capacity, a batch that replay does not divide: refused before training
    bad = [*authors[:-1], "curriculum.replay_buffer={32: 8}"]
    assert cli.main(tiny_args(tmp_path, "b1", *bad, subset=64, val=32)) == 2
    assert "gives no capacity for the stage at 22 px" in capsys.readouterr().err
    assert cli.main(tiny_args(tmp_path, "b2", *authors, "--batch-size", "15", subset=64, val=32)) == 2
    assert "not a multiple of its replay 2" in capsys.readouterr().err


# LeapLabTHU/EfficientTrain _ET_pp_wReplay_main_{res50,swinT,cswinT}.py: replay_times_list and
# replay_buffer_size_list over res_list = [96]*2 + [160]*4 + [224]*4 (sizes with r = 1 hold no buffer)
WREPLAY = [
    ("resnet50", "resnet50", {96: 4, 160: 2}, {96: 1920, 160: 256}, 0.0, None),  # [4,2,1], [1920,256,0]
    ("swin_tiny", "swin_tiny_patch4_window7_224", {96: 2}, {96: 1024}, 0.2, 5.0),  # [2,1,1], [1024,0,0]
    ("cswin_tiny", "cswin_tiny_224", {96: 2}, {96: 1024}, 0.2, None),  # [2,1,1], [1024,0,0]
]


@pytest.mark.parametrize("stem,model,replay,buffer,drop_path,clip", WREPLAY)
def test_authors_replay_presets_per_model(stem, model, replay, buffer, drop_path, clip):
    cfg = load_config(os.path.join(REPO, "configs", "imagenet_etpp_replay", f"{stem}.yaml"))
    c = cfg.curriculum
    assert (cfg.model.name, c.name, c.replay_mode, c.replay, c.replay_buffer) == (model, "efficienttrain++", "authors",
                                                                                 replay, buffer)
    # bs_list 512 per GPU x 8 (or 256 x update_freq 2): 4096; --lr 4e-3; the model's Table 14 row underneath
    assert (cfg.train.batch_size * 8, cfg.optim.base_lr, cfg.model.drop_path, cfg.optim.clip_grad) == \
        (4096, 4e-3, drop_path, clip)


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")
def test_authors_mode_epochs_load_a_random_part_not_every_image_once(tmp_path, monkeypatch):
    """The measured difference from the authors' replay epoch (docs/training.md, replay): here each epoch of a
    replay-r stage loads the first 1/r of a fresh shuffle, so over r epochs (one of the authors', which loads every
    image exactly once) a share (1 - 1/r)^r of the images is never loaded and others several times."""
    order = []
    orig = FashionMNIST.__getitem__

    def recording(self, i):
        if len(self) == 60000:  # the training set (validation reads are the test set's)
            order.append(int(i))
        return orig(self, i)

    monkeypatch.setattr(FashionMNIST, "__getitem__", recording)
    r, n = 4, 512
    authors = ["--curriculum", "efficienttrain", "--set", f"curriculum.replay={r}", "--set",
               "curriculum.replay_mode=authors", "--set", "curriculum.replay_buffer=8"]
    assert cli.main(tiny_args(tmp_path, "au", *authors, subset=n, val=16, batch=16, epochs=8, size=32)) == 0
    rows = metrics(tmp_path / "au")
    assert [row["replay"] for row in rows[:r]] == [r] * r and all(row["loaded_images"] == n // r for row in rows[:r])
    loads = Counter(order[:n])  # the first r epochs: n // r fresh images each
    never = 1 - len(loads) / n
    expected = (1 - 1 / r) ** r  # 0.316: each epoch misses an image with probability 1 - 1/r, independently
    assert abs(never - expected) < 5 * (expected * (1 - expected) / n) ** 0.5, never
    assert max(loads.values()) >= 3  # where the authors' epoch loads each image exactly once
    print(f"replay {r}, {n} images, {r} epochs: {never:.1%} never loaded (expected {expected:.1%}), "
          f"max loads {max(loads.values())}")
