"""Faults a long run meets: torn or corrupted checkpoints, a kill while metrics are written, DDP ranks meeting
unreadable images."""

from __future__ import annotations

import os

import pytest
import torch

from efficienttrain_ext import cli
from efficienttrain_ext.engine import atomic
from efficienttrain_ext.engine import checkpoint as ck
from efficienttrain_ext.engine.metrics import MetricsLog, read_metrics
from efficienttrain_ext.errors import CheckpointError

from _etrain_helpers import make_image_folder, metrics, run_torchrun, tiny_args


def _state():
    return {"format": ck.FORMAT, "model": {"w": torch.arange(1000, dtype=torch.float32), "b": torch.ones(3)},
            "epoch": 2, "config": {"train": {"epochs": 3}}}


def test_truncated_and_corrupted_checkpoints_are_refused(tmp_path):
    path = tmp_path / "last.pt"
    ck.save_atomic(_state(), path)
    assert torch.equal(ck.load(path)["model"]["w"], torch.arange(1000, dtype=torch.float32))
    data = path.read_bytes()
    # truncated (a copy cut short, a full disk): torch cannot even open it
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ck.load(tmp_path / "cut.pt")
    # one flipped byte inside a tensor's data: the file opens, the digest does not match
    blob = bytearray(data)
    marker = torch.arange(1000, dtype=torch.float32)[500:502].numpy().tobytes()
    at = bytes(blob).find(marker)
    assert at > 0
    blob[at] ^= 0x40
    (tmp_path / "flip.pt").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="corrupt: its content does not match its digest"):
        ck.load(tmp_path / "flip.pt")
    # a torch file that is not ours, and one without a digest
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an etrain checkpoint"):
        ck.load(tmp_path / "other.pt")
    torch.save(_state(), tmp_path / "nodigest.pt")
    with pytest.raises(CheckpointError, match="does not match its digest"):
        ck.load(tmp_path / "nodigest.pt")


def test_resume_from_a_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    args = tiny_args(tmp_path, "r", "--curriculum", "none", epochs=1, subset=32, val=16)
    assert cli.main(args) == 0
    last = tmp_path / "r" / "last.pt"
    last.write_bytes(last.read_bytes()[:-100])
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(tmp_path / "r")]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err


def test_an_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.jsonl"
    target.write_text("old\n")

    def dies_half_way(f):
        f.write(b"new, half")
        raise KeyboardInterrupt  # the process stopping in the middle of the write

    with pytest.raises(KeyboardInterrupt):
        atomic.write_atomic(target, dies_half_way)
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["metrics.jsonl"]  # no temporary file left behind


def test_metrics_files_are_replaced_whole(tmp_path, monkeypatch):
    log = MetricsLog(str(tmp_path))
    log.append({"epoch": 1, "top1": 10.0})
    writes = []
    real = atomic.write_text_atomic

    def spy(path, text):
        writes.append(os.path.basename(path))
        return real(path, text)

    monkeypatch.setattr("efficienttrain_ext.engine.metrics.write_text_atomic", spy)
    log.append({"epoch": 2, "top1": 20.0, "top1_at_B": 5.0})
    assert writes == ["metrics.jsonl", "metrics.csv"]
    assert [r["epoch"] for r in read_metrics(str(tmp_path))] == [1, 2]
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0] == "epoch,top1,top1_at_B"
    # a resumed run keeps the rows up to its checkpoint and drops the later ones
    log2 = MetricsLog(str(tmp_path), keep_epochs=1)
    assert [r["epoch"] for r in log2.rows] == [1] and len(read_metrics(str(tmp_path))) == 1


@pytest.mark.parametrize("accum", [1, 2], ids=["plain", "accum2"])
def test_ddp_rank_with_unreadable_images_loses_nothing_and_does_not_hang(tmp_path, accum):
    # a quarter of the images are corrupt and the batch is 2 (BatchNorm needs 2): without replacement many steps
    # would lose their batch on one rank only, and skipping them would need the ranks to agree at every step. The
    # loader replaces each unreadable image with the next readable one, so every step trains on full batches on
    # every rank (nothing lost, no per-step handshake), and the union of the unreadable files is reported
    root = make_image_folder(tmp_path / "d", per_class=16)
    for i, f in enumerate(sorted((root / "train").rglob("*.png"))):
        if i % 4 == 0:
            f.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    args = tiny_args(tmp_path, "ddp", "--data-root", str(root), "--curriculum", "none", "--device", "cpu",
                     "--set", "aug.mixup=0", "--set", "aug.cutmix=0", "--set", f"train.accum_steps={accum}",
                     epochs=2, subset=32, val=16, batch=2)
    run_torchrun(args, timeout=240)
    rows = metrics(tmp_path / "ddp")
    assert len(rows) == 2
    for r in rows:
        # 32 images (8 of them corrupt) in global batches of 2 ranks x 2 x accum: every step full
        assert r["loaded_images"] == r["train_images"] == 32
    assert rows[-1]["skipped_images"] == 8  # the union over both ranks and epochs


def test_resume_refuses_an_edited_schedule_file(tmp_path, capsys):
    sched = tmp_path / "s.yaml"
    sched.write_text("stages:\n  - {fraction: 0.5, scale: 0.75}\n  - {fraction: 0.5, scale: 1.0}\n")
    args = tiny_args(tmp_path, "y", "--curriculum", str(sched), epochs=2, subset=32, val=16)
    assert cli.main(args) == 0
    sched.write_text("stages:\n  - {fraction: 0.5, scale: 0.5}\n  - {fraction: 0.5, scale: 1.0}\n")
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(tmp_path / "y")]) == 2
    assert "gives other stages than when the checkpoint was written" in capsys.readouterr().err


def test_files_get_the_mode_of_plain_files(tmp_path):
    atomic.write_text_atomic(tmp_path / "a.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask
