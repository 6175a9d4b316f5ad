"""The batch prefetcher: its order and look-ahead (device-agnostic logic, tested on the CPU; the CUDA stream parts are
no-ops here), and a run with prefetching that resumes exactly, with the replay buffer and a stage switch.

Reference: an unprefetched loop prepares item i right before step i; prefetching one ahead prepares item i + 1
before step i, never more, and never past the epoch's last item (so the epoch-end checkpoint is taken before any of
the next epoch's data or random numbers are drawn).
"""

from __future__ import annotations

import shutil

import pytest
import torch

from efficienttrain_ext import cli
from efficienttrain_ext.engine.prefetch import Prefetcher, tensors_in

from _etrain_helpers import assert_same_run, make_image_folder, metrics, tiny_args


def _trace(ahead: int, n: int) -> tuple[list, list[str]]:
    log: list[str] = []

    def prepare(i):
        log.append(f"prep{i}")
        return i * 10

    out = []
    for v in Prefetcher(torch.device("cpu"), ahead).run(range(n), prepare):
        log.append(f"use{v // 10}")
        out.append(v)
    return out, log


def test_prefetch_order_and_look_ahead():
    out, log = _trace(0, 3)
    assert out == [0, 10, 20] and log == ["prep0", "use0", "prep1", "use1", "prep2", "use2"]
    out, log = _trace(1, 4)
    assert out == [0, 10, 20, 30]
    assert log == ["prep0", "prep1", "use0", "prep2", "use1", "prep3", "use2", "use3"]
    out, log = _trace(2, 3)
    assert log == ["prep0", "prep1", "prep2", "use0", "use1", "use2"]  # bounded by the epoch's items
    assert _trace(1, 0) == ([], [])
    # a consumer that stops early (the epoch's step budget) leaves the rest of the iterable unread
    read = []
    gen = Prefetcher(torch.device("cpu"), 1).run((read.append(i) or i for i in range(100)), lambda i: i)
    assert [next(gen), next(gen)] == [0, 1] and read == [0, 1, 2]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="ahead must be an integer >= 0"):
            Prefetcher(torch.device("cpu"), bad)
    assert [t.item() for t in tensors_in((torch.tensor(1), [torch.tensor(2), {"a": torch.tensor(3)}], 4, None))] \
        == [1, 2, 3]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data"), per_class=8, size=32)


@pytest.mark.parametrize("replay", [1, 2])
def test_prefetched_run_resumes_exactly(folder, tmp_path, replay):
    # efficienttrain at final 32 over 3 epochs: B = 22, 22, 32; resumed from the stage switch's checkpoint
    args = tiny_args(tmp_path, "full", "--data-root", str(folder), "--curriculum", "efficienttrain",
                     "--set", "train.prefetch=on", "--set", f"curriculum.replay={replay}", subset=16, val=4, batch=4,
                     epochs=3, size=32)
    assert cli.main(args) == 0
    rows = metrics(tmp_path / "full")
    assert [r["size"] for r in rows] == [22, 22, 32]
    # the replay buffer is used below the final size only: each loaded batch trains `replay` times there
    assert [r["replay"] for r in rows] == [replay, replay, 1]
    assert all(r["train_images"] == 16 and r["loaded_images"] == 16 // r["replay"] for r in rows)
    shutil.copytree(tmp_path / "full", tmp_path / "resumed")
    (tmp_path / "resumed" / "last.pt").unlink()
    assert cli.main(["train", "--resume", str(tmp_path / "resumed" / "stage1.pt")]) == 0
    assert_same_run(tmp_path / "full", tmp_path / "resumed", 3)
