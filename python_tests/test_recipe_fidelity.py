"""The recipe around the schedules against the authors' numbers (docs/training.md, "Recipe fidelity"):
EfficientTrain++'s learning rate over compute, the fixed warm-up, drop path at a ++ budget, the EMA decay."""

from __future__ import annotations

import math

import pytest
from timm.utils import ModelEmaV3
from torch import nn

from efficienttrain_ext.config import ConfigError, load_config, with_legacy_defaults
from efficienttrain_ext.curriculum.schedules import efficienttrain, efficienttrain_pp
from efficienttrain_ext.engine import StagePlan, Trainer
from efficienttrain_ext.engine.finetune import FINETUNE_DEFAULTS, LINEAR_PROBE_DEFAULTS
from efficienttrain_ext.engine.mae import MAE_DEFAULTS
from efficienttrain_ext.engine.model_factory import create_model
from efficienttrain_ext.engine.recipe import drop_path_rate, warmup_note, warmup_position
from efficienttrain_ext.errors import TrainError

from _etrain_helpers import make_image_folder

# LeapLabTHU/EfficientTrain _ET_pp_main_res50.py (also _ET_pp_main_swinT.py, _ET_pp_main_cswinT.py): the ResNet list
RES50_LIST = [96] * 2 + [160] * 4 + [224] * 4
IMAGENET_TRAIN = 1281167  # ImageNet-1K training images
BUDGET = 200  # _ET_pp_main_*.py: parser.add_argument('--epoch', default=200)


def authors_stage_starts(budget: int, res_list: list[int]) -> list[tuple[int, int]]:
    """(start_epoch, epochs) of every stage's process in the authors' scripts: _ET_pp_main_res50.py runs stage k
    with --epochs rp = int(budget * 224^2 / B^2) and --end_epoch int(rp / 10 * (k + 1)); utils_buffer.py
    auto_load_model resumes at start_epoch = round((ckpt epoch + 1) * B_prev^2 / B^2)."""
    out, prev_end, prev_b = [], 0, None
    for k, b in enumerate(res_list):
        rp = int(budget * (224 * 224) / (b * b))
        start = 0 if k == 0 else round(prev_end * prev_b ** 2 / b ** 2)
        out.append((start, rp))
        prev_end, prev_b = int(rp / 10 * (k + 1)), b
    return out


def authors_cosine(base: float, final: float, p: float, w: float) -> float:
    """utils_buffer.py cosine_scheduler at schedule fraction p with warm-up fraction w: a linear warm-up from 0, then
    final + (base - final) / 2 * (1 + cos(pi * i / (T - W)))."""
    if p < w:
        return base * p / w
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * (p - w) / (1 - w)))


def test_authors_scripts_put_stage_k_at_k_tenths_of_their_cosine():
    # the reference itself: every stage's first step sits at k/10 of its restarted cosine, within one epoch of it
    for k, (start, rp) in enumerate(authors_stage_starts(BUDGET, RES50_LIST)):
        assert abs(start / rp - k / 10) <= 1 / rp, (k, start, rp)


def test_progress_by_images_gives_the_96_px_stages_half_the_schedule():
    # what issue 20 measured before the fix: by epochs the two 96 px stages take 48% of the schedule, not 20%
    schedule = efficienttrain_pp(BUDGET, 224, family="cnn")
    by_images = StagePlan.build(schedule, 128, IMAGENET_TRAIN, 8, accum=4, progress="images")
    by_compute = StagePlan.build(schedule, 128, IMAGENET_TRAIN, 8, accum=4, progress="compute")
    first_160 = schedule.stages[2].start
    assert by_images.progress(first_160, 0) == pytest.approx(0.479, abs=0.001)
    assert by_compute.progress(first_160, 0) == pytest.approx(0.2, abs=0.001)
    with pytest.raises(TrainError, match="progress rule"):
        StagePlan.build(schedule, 128, IMAGENET_TRAIN, 8, progress="pixels")


@pytest.fixture(scope="module")
def etpp_trainer(tmp_path_factory):
    """A trainer on the ResNet list (resnet10t is a CNN: the same list as ResNet-50) at budget 200; built, not run."""
    tmp = tmp_path_factory.mktemp("etpp")
    folder = make_image_folder(tmp / "data", per_class=12, size=40)
    cfg = load_config(None, [
        "model.name=resnet10t", "model.drop_path=0.0", f"data.root={folder}", "data.workers=0",
        "curriculum.name=efficienttrain++", f"train.epochs={BUDGET}", "train.batch_size=4", "optim.lr=4e-3",
        "optim.min_lr=1e-6", "optim.warmup_lr=0", "train.progress=false", f"train.output={tmp}"])
    return Trainer(cfg, run_dir=str(tmp / "run"))


def test_etpp_learning_rate_at_every_stage_start_is_the_authors_k_tenths(etpp_trainer):
    trainer = etpp_trainer
    plan, stages = trainer.plan, trainer.schedule.stages
    assert [st.size for st in stages] == RES50_LIST
    total = plan.epoch_position[-1]
    # warm-up: 20 epochs of the first (96 px) stage, as the authors' stage 0 (20 of its int(200 * 224^2/96^2) epochs)
    w = warmup_position(trainer.cfg, plan) / plan.lr_total
    start0, rp0 = authors_stage_starts(BUDGET, RES50_LIST)[0]
    assert w == pytest.approx(20 / rp0, abs=1e-4)
    for k, st in enumerate(stages):
        trainer._set_lr(st.start, 0)
        lr = trainer.optimizer.param_groups[0]["lr"]
        p = plan.progress(st.start, 0)
        # integer stage boundaries: within half an epoch of the stage's size of k/10
        assert abs(p - k / 10) <= 0.5 * (st.size / 224) ** 2 / total + 1e-12, (k, p)
        assert lr == pytest.approx(authors_cosine(4e-3, 1e-6, p, w), rel=1e-9), k
    # issue 20: the 224 px stages start at ~35% of the peak rate (by epochs it was ~7%)
    trainer._set_lr(stages[6].start, 0)
    assert trainer.optimizer.param_groups[0]["lr"] / 4e-3 == pytest.approx(0.35, abs=0.01)
    # the cosine ends at min_lr with the last step
    last = plan.epochs - 1
    trainer._set_lr(last, plan.epoch_steps[last])
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-6, rel=1e-9)


def test_ema_decay_is_the_recipes_at_the_last_step(etpp_trainer):
    # the recipe's 0.9999 (EfficientTrain appendix; the authors' main_buffer.py uses timm's ModelEma, no warm-up)
    assert etpp_trainer.ema.get_decay(etpp_trainer.plan.total_steps) == 0.9999
    # timm's warm-up (1 - (1 + t)^-2/3, t = updates before this one) would leave ~0.9995 after 300 epochs of
    # 1281167 // 4096 = 312 steps (the trainer passes step = updates so far, as timm's train.py does)
    steps = 300 * (IMAGENET_TRAIN // 4096)
    warm = ModelEmaV3(nn.Linear(1, 1), decay=0.9999, use_warmup=True).get_decay(steps)
    assert warm == pytest.approx(1 - steps ** (-2 / 3), rel=1e-12) and warm < 0.99952


def test_deit_etpp_warms_up_over_a_fifth_of_the_schedule():
    # _ET_pp_main_deitS.py: rp_warmup_epoch = int(0.2 * rp_epoch) at every stage (configs/imagenet_deit_small_etpp.yaml)
    cfg = load_config("configs/imagenet_deit_small_etpp.yaml")
    assert cfg.optim.warmup_fraction == 0.2
    schedule = efficienttrain_pp(BUDGET, 224, family="deit")
    plan = StagePlan.build(schedule, 128, IMAGENET_TRAIN, 8, accum=4, progress="compute")
    assert warmup_position(cfg, plan) == pytest.approx(0.2 * plan.lr_total, rel=1e-12)
    with pytest.raises(ConfigError, match="optim.warmup_fraction"):
        load_config(None, ["optim.warmup_fraction=1.0"])


def test_warmup_is_twenty_epochs_whatever_the_run_length():
    # ET_training.py: --warmup_epochs 20 for every --epochs (not 20/300 of the run)
    cfg = load_config(None)
    assert cfg.optim.warmup_epochs == 20
    plan = StagePlan.build(efficienttrain(100, 224), 128, IMAGENET_TRAIN, 8, accum=4)
    assert warmup_position(cfg, plan) == pytest.approx(20 * plan.ref_steps, rel=1e-12)
    # the former rule stays available for old runs: 20/300 of 100 epochs
    legacy = load_config(None, ["optim.warmup_epochs=null"])
    assert warmup_position(legacy, plan) == pytest.approx(100 * 20 / 300 * plan.ref_steps, rel=1e-12)
    # issue 27: a run no longer than its warm-up warms up over 1/5 of itself (optim.short_run_warmup), and says so;
    # before, it warmed up throughout (peak at the last step, no decay), which null keeps (older runs resume so)
    for epochs in (2, 5, 20):
        short = StagePlan.build(efficienttrain(epochs, 224), 128, IMAGENET_TRAIN, 8)
        assert warmup_position(cfg, short) == pytest.approx(0.2 * short.lr_total, rel=1e-12)
        assert warmup_note(cfg, short) == (f"warm-up 20.0% of the schedule (capped by optim.short_run_warmup: the "
                                           f"recipe's 20-epoch warm-up is not shorter than this {epochs}-epoch run)")
        old = load_config(None, ["optim.short_run_warmup=null"])
        assert warmup_position(old, short) == short.lr_total
    longer = StagePlan.build(efficienttrain(21, 224), 128, IMAGENET_TRAIN, 8)  # longer than its warm-up: unchanged
    assert warmup_position(cfg, longer) == pytest.approx(20 * longer.ref_steps, rel=1e-12)
    assert warmup_note(cfg, longer) == "warm-up 95.2% of the schedule"
    assert with_legacy_defaults({"optim": {}})["optim"]["short_run_warmup"] is None
    with pytest.raises(ConfigError, match="optim.short_run_warmup"):
        load_config(None, ["optim.short_run_warmup=1.0"])
    # MAE (He et al. 2022): pre-training Table 8: 40 epochs; fine-tuning Table 9: 5; linear probing Table 10: 10
    assert (MAE_DEFAULTS["optim"]["warmup_epochs"], FINETUNE_DEFAULTS["optim"]["warmup_epochs"],
            LINEAR_PROBE_DEFAULTS["optim"]["warmup_epochs"]) == (40, 5, 10)
    assert load_config("configs/imagenet_paper.yaml").optim.warmup_epochs == 20


def test_etpp_drop_path_follows_the_budget():
    # _ET_pp_main_swinT.py: --drop_path {0.2 * args.epoch / 200}; _ET_pp_main_deitS.py: 0.1 * epoch / 200
    def cfg(*extra):
        return load_config(None, ["model.name=deit_tiny_patch16_224", "model.kwargs={depth: 2, embed_dim: 32, "
                                  "num_heads: 2}", "model.drop_path=0.2", *extra])

    assert drop_path_rate(cfg("curriculum.name=efficienttrain++", "train.epochs=100")) == pytest.approx(0.1)
    assert drop_path_rate(cfg("curriculum.name=efficienttrain++", "train.epochs=300")) == pytest.approx(0.3)
    assert drop_path_rate(cfg("train.epochs=100")) == 0.2  # efficienttrain: the model's rate as given
    assert drop_path_rate(cfg("curriculum.name=efficienttrain++", "train.epochs=100",
                              "curriculum.efficienttrain_pp.drop_path_budget=null")) == 0.2
    # it reaches the model: timm's last block has the full rate (linspace(0, rate, depth))
    model = create_model(cfg("curriculum.name=efficienttrain++", "train.epochs=100"), 10)
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)
    with pytest.raises(TrainError, match="not below 1"):
        drop_path_rate(cfg("curriculum.name=efficienttrain++", "train.epochs=1000"))


# ----- issue 27: optim.lr_mode=authors, the authors' per-stage restarts


def authors_stage_lr(base: float, final: float, budget: int, res_list: list[int], k: int, epoch: float,
                     warmup: float = 20) -> float:
    """Stage k's rate at (fractional) epoch ``epoch`` of its own process, as written in the authors' code: rp =
    int(budget * 224^2 / B^2) epochs, --warmup_epochs int(warmup) (DeiT: int(0.2 * rp)), utils_buffer.py
    cosine_scheduler: np.linspace(0, base, warmup_iters), then final + (base - final)/2 * (1 + cos(pi i / len))."""
    rp = int(budget * (224 * 224) / (res_list[k] * res_list[k]))
    w = int(warmup) if warmup >= 1 else int(warmup * rp)
    if epoch < w:
        return base * epoch / w
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * (epoch - w) / (rp - w)))


@pytest.fixture(scope="module")
def authors_lr_trainer(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("authors_lr")
    folder = make_image_folder(tmp / "data", per_class=12, size=40)
    cfg = load_config(None, [
        "model.name=resnet10t", "model.drop_path=0.0", f"data.root={folder}", "data.workers=0",
        "curriculum.name=efficienttrain++", f"train.epochs={BUDGET}", "train.batch_size=4", "optim.lr=4e-3",
        "optim.min_lr=1e-6", "optim.warmup_lr=0", "optim.lr_mode=authors", "train.progress=false",
        f"train.output={tmp}"])
    return Trainer(cfg, run_dir=str(tmp / "run"))


def test_authors_lr_mode_restarts_each_stage_as_the_authors_scripts(authors_lr_trainer, etpp_trainer):
    trainer, plan = authors_lr_trainer, authors_lr_trainer.plan
    stages = trainer.schedule.stages
    assert [st.size for st in stages] == RES50_LIST

    def lr_at(t, epoch, done):
        t._set_lr(epoch, done)
        return t.optimizer.param_groups[0]["lr"]

    assert warmup_note(trainer.cfg, plan).endswith("(optim.lr_mode=authors: every stage restarts its own warm-up "
                                                   "and cosine)")
    starts = authors_stage_starts(BUDGET, RES50_LIST)
    for k, st in enumerate(stages):
        start, rp = starts[k]
        assert lr_at(trainer, st.start, 0) == pytest.approx(authors_stage_lr(4e-3, 1e-6, BUDGET, RES50_LIST, k, start),
                                                              rel=1e-9), k
        # the stage's last step reaches the authors' --end_epoch int(rp / 10 * (k + 1))
        last = st.end - 1
        assert lr_at(trainer, last, plan.epoch_steps[last]) == pytest.approx(
            authors_stage_lr(4e-3, 1e-6, BUDGET, RES50_LIST, k, int(rp / 10 * (k + 1))), rel=1e-9), k
    # the numbers: at the 224 px stage starts theirs is 0.413 / 0.250 / 0.117 / 0.030 of the peak, the one
    # continuous cosine (lr_mode continuous, the default) 0.356 / 0.213 / 0.099 / 0.026
    ours = [lr_at(etpp_trainer, stages[k].start, 0) / 4e-3 for k in range(6, 10)]
    theirs = [lr_at(trainer, stages[k].start, 0) / 4e-3 for k in range(6, 10)]
    assert theirs == pytest.approx([0.413, 0.250, 0.117, 0.030], abs=0.0015)
    assert ours == pytest.approx([0.356, 0.213, 0.099, 0.026], abs=0.0015)
    # warm-up: 20 of stage 0's 1088 epochs, from 0 (the authors' linspace(0, base, ...))
    assert lr_at(trainer, 0, 0) == 0.0
    x = 10 / stages[0].end * int(starts[0][1] / 10)  # our epoch 10 on the authors' stage-0 epochs [0, 108]
    assert x < 20 and lr_at(trainer, 10, 0) == pytest.approx(
        authors_stage_lr(4e-3, 1e-6, BUDGET, RES50_LIST, 0, x), rel=1e-9)
    # the rate goes back up at every stage switch (a restarted cosine), never under one continuous cosine
    jumps = [lr_at(trainer, st.start, 0) > lr_at(trainer, st.start - 1, plan.epoch_steps[st.start - 1])
             for st in stages[1:]]
    assert any(jumps) and all(j for j, a, b in zip(jumps, stages, stages[1:]) if a.size != b.size)


def test_authors_lr_mode_errors():
    with pytest.raises(ConfigError, match="optim.lr_mode=authors restarts the cosine at every efficienttrain"):
        load_config(None, ["optim.lr_mode=authors"])  # efficienttrain: one process, one cosine in their code too
    with pytest.raises(ConfigError, match="optim.lr_mode"):
        load_config(None, ["curriculum.name=efficienttrain++", "optim.lr_mode=restarts"])
