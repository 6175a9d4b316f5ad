"""The training step holds no host synchronisation: device reads happen per log interval and per epoch, not per step.

Reading a device tensor from the host (``.item()``, ``float()``, ``.tolist()``, ``.cpu()``) makes the host wait for
the GPU's queue. On the CPU the same calls are counted by monkeypatched wrappers: the reference is the analytic
count of the design, one read per ``train.log_interval`` steps plus one at the epoch end, independent of the
number of steps (the old step made one ``loss.item()`` per step, which this test fails on). On CUDA,
``scripts/sync_debug_epoch.py`` runs an epoch under ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import sys
from collections import Counter

import pytest
import torch
import torch.distributed as dist

from efficienttrain_ext.config import load_config
from efficienttrain_ext.engine import Trainer
from efficienttrain_ext.engine.loss_monitor import DeviceLossMonitor

from _etrain_helpers import make_image_folder

READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")
COLLECTIVES = ("all_reduce", "all_gather", "all_gather_object", "broadcast", "barrier", "reduce", "all_to_all")
# RandAugment draws its per-image parameters on the host: its reads are of CPU tensors by design (copied to the GPU
# without waiting), so they are not syncs on CUDA either; torch's optimizers keep their step counts on the CPU too.
# The global data order (data/order.py) is a CPU permutation read per batch by the sampler, and the epoch end's
# host collectives (engine/collectives.py) sum host tensors: neither reads a device tensor.
HOST_SIDE = ("efficienttrain_ext.augment", "efficienttrain_ext.ops.augment", "efficienttrain_ext.data.order",
             "efficienttrain_ext.engine.collectives")


def _count_syncs(monkeypatch) -> Counter:
    """Counts of host reads of tensors made by this package's code, and of device syncs and collectives anywhere."""
    counts: Counter = Counter()

    def counting(owner, name, from_package_only):
        real = getattr(owner, name)

        def counted(*args, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if not from_package_only or (caller.startswith("efficienttrain_ext") and not caller.startswith(HOST_SIDE)):
                counts[name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)

    for name in READS:
        counting(torch.Tensor, name, True)
    counting(torch.cuda, "synchronize", False)
    for name in COLLECTIVES:
        counting(dist, name, False)
    return counts


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data"), per_class=16, size=32)


def _trainer(folder, out, subset, log_interval, **train):
    # the paper's recipe where it costs nothing: EMA, gradient clipping, Mixup/CutMix, random erasing, RandAugment
    cfg = load_config(overrides=[
        "model.name=resnet10t", f"data.root={folder}", "data.dataset=imagefolder", "data.final_size=32",
        f"data.train_subset={subset}", "data.val_subset=4", "data.workers=0", "curriculum.name=efficienttrain",
        "train.epochs=2", "train.batch_size=4", "train.device=cpu", "train.progress=false",
        f"train.log_interval={log_interval}", f"train.output={out}", *[f"train.{k}={v}" for k, v in train.items()]])
    return Trainer(cfg)


@pytest.mark.parametrize("log_interval", [1000, 2])
def test_host_reads_per_epoch_do_not_grow_with_steps(folder, tmp_path, monkeypatch, log_interval):
    seen = {}
    for steps in (4, 8):
        trainer = _trainer(folder, tmp_path / f"{log_interval}-{steps}", 4 * steps, log_interval)
        counts = _count_syncs(monkeypatch)
        row = trainer.train_one_epoch(0)
        monkeypatch.undo()
        assert row["train_images"] == 4 * steps and row["train_loss"] > 0
        seen[steps] = counts
    for counts in seen.values():
        assert counts["synchronize"] == 0 and not any(counts[c] for c in COLLECTIVES)  # CPU, one process
    if log_interval >= 8:
        # no interval check within the epoch: the same reads for 4 and for 8 steps (the epoch end's), and few
        assert seen[4] == seen[8]
        assert seen[8]["tolist"] == 1 and seen[8]["item"] == 0
    else:
        # one loss read per 2 steps, plus the epoch end's; nothing else per step
        assert seen[4]["tolist"] == 4 // 2 + 1 and seen[8]["tolist"] == 8 // 2 + 1
        assert {k: v for k, v in seen[4].items() if k != "tolist"} == \
               {k: v for k, v in seen[8].items() if k != "tolist"}


def test_a_non_finite_loss_is_caught_at_the_log_interval_with_its_step(folder, tmp_path):
    trainer = _trainer(folder, tmp_path / "nan", 32, 2)
    real_loss, calls = trainer.task.loss, []

    def loss_nan_at_third_step(model, x, y):
        calls.append(1)
        loss = real_loss(model, x, y)
        return loss * float("nan") if len(calls) == 3 else loss

    trainer.task.loss = loss_nan_at_third_step
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 2 \(found by the check of steps 2-3: the loss "
                                                 r"is read every train.log_interval = 2 steps\)"):
        trainer.train_one_epoch(0)
    assert len(calls) == 4  # the interval's steps ran; nothing after its check


def test_loss_monitor_matches_the_host_sum_and_refuses_bad_intervals():
    losses = [0.7, 1.25, 2.0, 0.125]
    mon = DeviceLossMonitor(torch.device("cpu"), 3)
    host = torch.zeros((), dtype=torch.float64)
    for step, v in enumerate(losses):
        mon.add(torch.tensor(v, dtype=torch.float32), 4 + step, step)
        host += float(torch.tensor(v, dtype=torch.float32)) * (4 + step)  # the old per-step host accumulation
        assert mon.due() == (step == 2)
        if mon.due():
            mon.check()
    assert mon.check() == float(host) and mon.images == 4 + 5 + 6 + 7
    assert mon.last_mean == pytest.approx(0.125)  # the last interval held one step
    mon.add(torch.tensor(float("inf")), 2, 9)
    with pytest.raises(FloatingPointError, match="loss is inf at step 9"):
        mon.check()
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="log interval must be an integer >= 1"):
            DeviceLossMonitor(torch.device("cpu"), bad)


def test_log_interval_counts_optimizer_steps_under_accumulation(folder, tmp_path, monkeypatch):
    # train.log_interval is in steps (config.py): with 2 micro-batches per step, 4 steps at interval 2 read the loss
    # 4 / 2 times plus the epoch end's (counting micro-batches read it after every step: 4 + 1)
    trainer = _trainer(folder, tmp_path / "accum", 4 * 2 * 4, 2, accum_steps=2)
    counts = _count_syncs(monkeypatch)
    row = trainer.train_one_epoch(0)
    monkeypatch.undo()
    assert row["train_images"] == 32 and trainer.plan.epoch_steps[0] == 4
    assert counts["tolist"] == 4 // 2 + 1
    mon = DeviceLossMonitor(torch.device("cpu"), 2)
    for step in (0, 0, 0, 1):
        mon.add(torch.tensor(1.0), 4, step)
        assert not mon.due() or step == 1
    assert mon.due()


@pytest.mark.parametrize("kernel,reads", [("fused", 0), ("foreach", 1)])
def test_fp16_grad_scaler_reads_its_inf_check_only_without_a_fused_optimizer(kernel, reads, monkeypatch):
    """docs/training.md's fp16 note: GradScaler hands a fused optimizer (torch's AdamW/Adam/SGD, optim.fused auto on
    CUDA) its scale and inf flag as tensors, so the skip happens on the device; with any other optimizer
    (foreach, LAMB) GradScaler.step reads the inf flag on the host every step. (Run on the CPU: the same code path.)"""
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, **{kernel: True})
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    scaler.scale(model(torch.randn(3, 4)).sum()).backward()
    counts: Counter = Counter()
    real = torch.Tensor.item

    def item(self):  # GradScaler's own reads (the optimizer reads its step counts, CPU tensors on CUDA too)
        counts["item"] += sys._getframe(1).f_globals.get("__name__") == "torch.amp.grad_scaler"
        return real(self)

    monkeypatch.setattr(torch.Tensor, "item", item)
    scaler.step(opt)
    scaler.update()
    monkeypatch.undo()
    assert counts["item"] == reads
