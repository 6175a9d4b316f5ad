"""The Lightning callback with real ``lightning.Trainer`` runs on the CPU: sizes and magnitudes follow the schedule,
ViT size switches carry the optimizer and EMA, resume mid-stage, two-process DDP (gloo), bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch")

from lightning_modules import Classifier, loaders, tiny_deit, uint8_images  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from _etrain_helpers import REPO, etrain_env  # noqa: E402
from efficienttrain_ext.curriculum import plan  # noqa: E402
from efficienttrain_ext.errors import TrainError  # noqa: E402
from efficienttrain_ext.integrations.lightning import EfficientTrain  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EPOCHS, FINAL = 5, 96


class Record(pl.Callback):
    """Placed after EfficientTrain: what it set for every step, and the training state around each epoch."""

    def __init__(self, et: EfficientTrain):
        self.et = et
        self.steps: list[tuple[int, int, int, float]] = []  # epoch, batch, size, magnitude
        self.pos_start: dict[int, torch.Tensor] = {}
        self.epoch_checks: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.steps.append((trainer.current_epoch, batch_idx, self.et.size, self.et.magnitude))

    def on_train_epoch_start(self, trainer, pl_module):
        m, opt = pl_module.model, trainer.optimizers[0]
        self.pos_start[trainer.current_epoch] = m.pos_embed.detach().clone()
        in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
        self.epoch_checks.append({
            "params_in_optimizer": all(id(p) in in_opt for p in m.parameters()),
            "state_shapes_ok": all(v.shape == p.shape for p in m.parameters() for v in opt.state.get(p, {}).values()
                                   if torch.is_tensor(v) and v.dim() > 0),
            "ema_shape": tuple(pl_module.ema.module.pos_embed.shape), "pos_shape": tuple(m.pos_embed.shape),
            "ema_frozen": not any(p.requires_grad for p in pl_module.ema.parameters()),
        })

    def on_train_epoch_end(self, trainer, pl_module):
        e = trainer.current_epoch
        self.epoch_checks[-1]["pos_trained"] = not torch.equal(self.pos_start[e], pl_module.model.pos_embed.detach())


def _trainer(callbacks, max_epochs=EPOCHS, **kw):
    return pl.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=callbacks, **{"enable_checkpointing": False, **kw})


def _expected_magnitude(schedule, epoch, i, steps):
    return 9.0 * (epoch + i / steps) / schedule.epochs  # efficienttrain: m = 9 t / T per step


def test_sizes_and_magnitudes_follow_the_schedule():
    torch.manual_seed(0)
    module = Classifier(tiny_deit(FINAL))
    et = EfficientTrain(final_size=FINAL, seed=0)
    rec = Record(et)
    train, val = loaders()
    _trainer([et, rec]).fit(module, train, val)

    sched = plan("efficienttrain", epochs=EPOCHS, final_size=FINAL, model=tiny_deit(FINAL))
    assert [s.size for s in sched.stages] == [64, 80, 96]  # patch 16: 68.6 -> 64, 82.3 -> 80
    assert [(e, s[-1], d) for e, _, s, d in module.train_seen] == \
        [(e, sched.size_at(e), "torch.float32") for e in range(EPOCHS) for _ in range(2)]
    for e, i, size, m in rec.steps:
        assert size == sched.size_at(e)
        assert m == pytest.approx(_expected_magnitude(sched, e, i, 2))
    assert module.val_sizes == [FINAL] * (1 + EPOCHS)  # sanity check + every epoch, on a final-size copy
    for e, c in enumerate(rec.epoch_checks):
        assert c["params_in_optimizer"] and c["state_shapes_ok"] and c["ema_frozen"], (e, c)
        assert c["pos_shape"] == c["ema_shape"] == (1, (sched.size_at(e) // 16) ** 2 + 1, 32), (e, c)
        assert c["pos_trained"], e  # the optimizer updates the replaced pos_embed in every stage
    assert module.model.patch_embed.img_size == (FINAL, FINAL)
    assert "on_load_checkpoint" not in vars(module)  # the resume hook is removed at teardown


class StopAfter(pl.Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def test_resume_mid_stage_continues_at_size_and_magnitude(tmp_path):
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)
    torch.manual_seed(0)
    first = Classifier(tiny_deit(FINAL))
    train, val = loaders()
    _trainer([EfficientTrain(final_size=FINAL), StopAfter(2), ckpt], enable_checkpointing=True).fit(first, train, val)
    assert [e for e, *_ in first.train_seen] == [0, 0, 1, 1]  # stopped inside stage 0 (epochs 1-3 at 64)
    saved = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["state_dict"]["model.pos_embed"].shape == (1, 17, 32)  # the 64 px grid

    torch.manual_seed(1)
    second = Classifier(tiny_deit(FINAL))  # built at the final size, as any fresh process would
    et = EfficientTrain(final_size=FINAL)
    rec = Record(et)
    _trainer([et, rec]).fit(second, train, val, ckpt_path=str(tmp_path / "last.ckpt"))
    sched = et.schedule
    assert [(e, s[-1]) for e, _, s, _ in second.train_seen] == [(e, sched.size_at(e)) for e in (2, 2, 3, 3, 4, 4)]
    assert rec.steps[0][:3] == (2, 0, 64)
    assert rec.steps[0][3] == pytest.approx(9.0 * 2 / 5)  # the magnitude continues where the run stopped
    # the resumed run started from the checkpoint's weights, not its own initialisation
    assert torch.equal(rec.pos_start[2], saved["state_dict"]["model.pos_embed"])
    assert all(c["params_in_optimizer"] and c["state_shapes_ok"] for c in rec.epoch_checks)


def test_convnet_with_normalised_float_batches():
    # a ConvNet takes any size: nothing is resized; the loader's ToTensor()+Normalize floats are undone exactly
    import timm

    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    x, y = uint8_images(16, FINAL)
    xf = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    train = DataLoader(TensorDataset(xf, y), batch_size=8)
    convnet = timm.create_model("convnext_atto", num_classes=4, depths=(1, 1, 1, 1), dims=(16, 32, 64, 128))
    module = Classifier(convnet, ema=False)
    et = EfficientTrain(final_size=FINAL, input_mean=mean, input_std=std, randaugment=None)
    _trainer([et], limit_val_batches=0).fit(module, train)
    sched = plan("efficienttrain", epochs=EPOCHS, final_size=FINAL, model=module.model)  # any even size
    assert [s.size for s in sched.stages] == [68, 82, 96]
    assert [s[-1] for _, _, s, _ in module.train_seen] == [sched.size_at(e) for e in range(EPOCHS) for _ in range(2)]


def test_ddp_two_processes(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(HERE, "lightning_ddp_run.py"), str(tmp_path)], cwd=REPO,
                          env=etrain_env({"PYTHONPATH": REPO + os.pathsep + HERE}), capture_output=True, text=True,
                          timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.load(open(tmp_path / f"rank{r}.json")) for r in (0, 1)]
    sizes = [[e, plan("efficienttrain", epochs=EPOCHS, final_size=FINAL, model=tiny_deit(FINAL)).size_at(e)]
             for e in range(EPOCHS) for _ in range(2)]  # 32 images / 2 ranks / batch 8
    for r in ranks:
        assert r["world"] == 2
        assert r["train_sizes"] == sizes
        assert r["val_sizes"] == [FINAL] * EPOCHS
        assert r["wrapper_current"] == [True] * EPOCHS  # DDP rebuilt after every switch that replaced pos_embed
    # gradients were averaged across ranks through every stage: identical weights although the data differed
    assert ranks[0]["weights"] == ranks[1]["weights"]


def test_errors():
    train, _ = loaders()
    with pytest.raises(TrainError, match=r"max_epochs=\d+"):  # efficienttrain++ runs longer than its budget
        _trainer([EfficientTrain("efficienttrain++", epochs=5, final_size=FINAL)], max_epochs=5,
                 limit_val_batches=0).fit(Classifier(tiny_deit(FINAL)), train)
    with pytest.raises(TrainError, match="needs epochs="):
        EfficientTrain("efficienttrain++", final_size=FINAL)
    with pytest.raises(TrainError, match="no such submodule"):
        _trainer([EfficientTrain(final_size=FINAL, model="backbone")], limit_val_batches=0).fit(
            Classifier(tiny_deit(FINAL)), train)
    # normalised floats without saying how they were normalised
    x, y = uint8_images(8, FINAL)
    xf = (x.float() / 255 - 0.45) / 0.225
    with pytest.raises(ValueError, match="input_mean/input_std"):
        _trainer([EfficientTrain(final_size=FINAL)], limit_val_batches=0).fit(
            Classifier(tiny_deit(FINAL)), DataLoader(TensorDataset(xf, y), batch_size=8))
    # a collate that makes tuples: the images cannot be replaced in place
    tuples = DataLoader(TensorDataset(x, y), batch_size=8, collate_fn=lambda s: tuple(torch.stack(t) for t in zip(*s)))
    with pytest.raises(TypeError, match="tuple"):
        _trainer([EfficientTrain(final_size=FINAL)], limit_val_batches=0).fit(Classifier(tiny_deit(FINAL)), tuples)
