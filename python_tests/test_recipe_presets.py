"""The papers' recipes around the schedules (issue 20, items 2, 6, 7): per-model presets (Table 14 as the authors'
scripts run it), random erasing before the low-frequency crop, the test-time resize, the size rule below 224.

Every recipe value asserted here names its source: the authors' repository LeapLabTHU/EfficientTrain (file named
next to the value) or, for PVT-v2, whai362/PVT classification/configs/pvt_v2/*.py.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data.random_erasing import RandomErasing
from torchvision import transforms as T

from efficienttrain_ext import cli
from efficienttrain_ext.config import load_config, with_legacy_defaults
from efficienttrain_ext.engine import checkpoint as ckpt_io
from efficienttrain_ext.curriculum import build_schedule
from efficienttrain_ext.curriculum.schedules import efficienttrain_sizes
from efficienttrain_ext.curriculum.sizes import SizeRule
from efficienttrain_ext.data.transforms import WARP_FROM, eval_transform
from efficienttrain_ext.engine.pipeline import BatchPipeline
from efficienttrain_ext.errors import ConfigError
from efficienttrain_ext.integrations import CurriculumBatch
from efficienttrain_ext.ops.lowfreq import lowfreq_crop
from efficienttrain_ext.presets import paper_preset, paper_presets

from _etrain_helpers import FMNIST, tiny_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ----- item 6: random erasing at the full size, before the crop


def _erasing_pipeline(order: str) -> BatchPipeline:
    return BatchPipeline(MEAN, STD, "cpu", erasing=RandomErasing(1.0, mode="pixel", device="cpu"),
                         erasing_order=order)


def _normalised(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255.0 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def _seed(s: int) -> None:
    random.seed(s)  # timm's RandomErasing draws its boxes from `random`, its noise from torch
    torch.manual_seed(s)


@pytest.mark.parametrize("size", [16, 23])
def test_erasing_runs_at_full_size_before_the_crop(size, gen):
    """EfficientTrain's order: timm's loader transform erases the 224 image (re_prob 0.25, mode pixel) and the crop
    runs on the GPU afterwards (LeapLabTHU/EfficientTrain datasets.py build_transform -> create_transform(re_prob=
    args.reprob); engine.py train_one_epoch -> utils.freq_crop(samples, args.input_size))."""
    x = torch.randint(0, 256, (3, 3, 32, 32), generator=gen, dtype=torch.uint8)
    _seed(3)
    ref = lowfreq_crop(RandomErasing(1.0, mode="pixel", device="cpu")(_normalised(x)), size)
    _seed(3)
    got, _ = _erasing_pipeline("before_crop").train(x, torch.zeros(3, dtype=torch.long), size, 0.0)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # the old order (EfficientTrain++'s released code, datasets_buffer.py: Lanczos resize, then erasing at B)
    _seed(3)
    old = RandomErasing(1.0, mode="pixel", device="cpu")(_normalised_crop(x, size))
    _seed(3)
    got_old, _ = _erasing_pipeline("after_crop").train(x, torch.zeros(3, dtype=torch.long), size, 0.0)
    torch.testing.assert_close(got_old, old, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, got_old, atol=1e-2)


def _normalised_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    y = lowfreq_crop(x.float() / 255.0, size)
    return (y - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_erased_noise_is_low_passed_before_crop():
    """Why the order matters: erased full-band noise stays full-band at B when erased after the crop; erased before,
    only its low band survives. On a constant image the crop's output is the erased box's noise alone."""
    x = torch.full((1, 3, 32, 32), 128, dtype=torch.uint8)
    y = torch.zeros(1, dtype=torch.long)
    _seed(0)
    before, _ = _erasing_pipeline("before_crop").train(x, y, 16, 0.0)
    _seed(0)
    after, _ = _erasing_pipeline("after_crop").train(x, y, 16, 0.0)

    def high_band_share(img: torch.Tensor) -> float:  # energy outside the central half of the spectrum
        f = torch.fft.fftshift(torch.fft.fft2(img - img.mean(dim=(-2, -1), keepdim=True)), dim=(-2, -1)).abs() ** 2
        c = img.shape[-1] // 2
        inner = f[..., c - c // 2:c + c // 2, c - c // 2:c + c // 2].sum()
        return float((f.sum() - inner) / f.sum())

    assert high_band_share(before) < high_band_share(after)


def test_erasing_order_default_and_bad_values():
    assert load_config(None).aug.erasing_order == "before_crop"  # EfficientTrain's order (datasets.py, engine.py)
    with pytest.raises(ConfigError, match="aug.erasing_order"):
        load_config(None, ["aug.erasing_order=sideways"])
    with pytest.raises(ValueError, match="erasing_order must be one of"):
        BatchPipeline(MEAN, STD, "cpu", erasing_order="sideways")


# ----- item 7: the test-time resize and the size rule below 224


def _authors_eval(size: int) -> T.Compose:
    """LeapLabTHU/EfficientTrain datasets.py build_transform(is_train=False) as written there (crop_pct None)."""
    if size >= 384:  # "warping (no cropping) when evaluated at 384 or larger"
        t = [T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC)]
    else:
        crop_pct = 224 / 256
        t = [T.Resize(int(size / crop_pct), interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size)]
    return T.Compose(t + [T.PILToTensor()])


@pytest.mark.parametrize("size", [384, 448, 224, 192])
def test_eval_transform_is_the_authors(size):
    yy, xx = np.mgrid[0:300, 0:460]  # a non-square image: a warp and a resize-and-crop differ
    img = Image.fromarray(np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8))
    cfg = load_config(None)
    assert cfg.data.crop_pct is None  # the authors' rule by default
    ours = eval_transform(size, cfg.data.crop_pct, cfg.data.interpolation)(img)
    assert ours.shape == (3, size, size)
    assert torch.equal(ours, _authors_eval(size)(img))
    if size >= WARP_FROM:  # 384: the whole image, resized to 384 x 384 (crop 1.0, no aspect ratio kept)
        assert torch.equal(ours, torch.from_numpy(np.array(img.resize((size, size), Image.BICUBIC))).permute(2, 0, 1))
    # an explicit crop_pct is honoured at any size (timm's meaning)
    explicit = eval_transform(size, 1.0)(img)
    assert torch.equal(explicit, T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
                                            T.CenterCrop(size), T.PILToTensor()])(img))


def test_crop_pct_bad_values():
    for bad in ("0", "1.5", "true"):
        with pytest.raises(ConfigError, match="data.crop_pct"):
            load_config(None, [f"data.crop_pct={bad}"])


def test_efficienttrain_sizes_at_224_384_and_below():
    # 224: B = 160, 192, 224 for 60/20/20% of training (LeapLabTHU/EfficientTrain ET_training.py:
    # b_list = [160,] * 3 + [192,] * 1 + [224,] * 1 over 5 equal stages)
    s = build_schedule("efficienttrain", 300, 224)
    assert [(st.start, st.end, st.size) for st in s.stages] == [(0, 180, 160), (180, 240, 192), (240, 300, 224)]
    # v >= 224: 160, (160 + v) / 2, v (EfficientTrain paper Table 8c; 384 -> 160, 272, 384)
    assert [st.size for st in build_schedule("efficienttrain", 300, 384).stages] == [160, 272, 384]
    # 160 <= v < 224: kept proportional (v * 160/224, v * 192/224, v; docs/training.md "Recipe fidelity" says why):
    # at 192 that is 137.1 -> 138, 164.6 -> 164 (even sizes), not 160/176/192
    assert efficienttrain_sizes(192) == pytest.approx((192 * 160 / 224, 192 * 192 / 224, 192))
    convnet = SizeRule(step=2, min_size=2)  # what a ConvNet such as ResNet-50 probes to
    assert [st.size for st in build_schedule("efficienttrain", 300, 192, convnet).stages] == [138, 164, 192]
    # the reason: the fixed-160 rule below 224 would jump at v = 160 (a run with no size ramp) while the proportional
    # rule meets the paper's rule at 224 and keeps each stage's share of the band
    b1 = [efficienttrain_sizes(v)[0] / v for v in (96, 160, 192, 224)]
    assert b1 == pytest.approx([160 / 224] * 4)


# ----- item 2: per-model presets (the papers' Table 14, as the authors' scripts run it)

# Drop path: LeapLabTHU/EfficientTrain ET_training.py default_dp_dict; EMA: ET_training.py additional_configs
# (' --model_ema true' for ConvNeXt/CSWin); clipping 5.0 for DeiT/Swin/PVT and AMP for every model but ConvNeXt: the
# paper's Table 14 (where ET_training.py differs: ResNet-50 runs without --use_amp; PVT's own configs,
# whai362/PVT classification/configs/pvt_v2/pvt_v2_b*.py, clip at none / 1.0; the presets follow the table).
# PVT-v2 drop path: whai362/PVT configs. Columns: model, preset file, drop path, EMA, clip, amp.
TABLE_14 = [
    ("resnet50", "resnet50", 0.0, False, None, "auto"),
    ("convnext_tiny", "convnext_tiny", 0.1, True, None, "off"),
    ("convnext_small.fb_in1k", "convnext_small", 0.4, True, None, "off"),
    ("convnext_base", "convnext_base", 0.5, True, None, "off"),
    ("deit_tiny_patch16_224", "deit_tiny", 0.1, False, 5.0, "auto"),
    ("deit_small_patch16_224", "deit_small", 0.1, False, 5.0, "auto"),
    ("swin_tiny_patch4_window7_224", "swin_tiny", 0.2, False, 5.0, "auto"),
    ("swin_small_patch4_window7_224", "swin_small", 0.3, False, 5.0, "auto"),
    ("swin_base_patch4_window7_224", "swin_base", 0.5, False, 5.0, "auto"),
    ("cswin_tiny_224", "cswin_tiny", 0.2, True, None, "auto"),
    ("cswin_small_224", "cswin_small", 0.4, True, None, "auto"),
    ("cswin_base_224", "cswin_base", 0.5, True, None, "auto"),
    ("pvt_v2_b0", "pvt_v2_b0", 0.1, False, 5.0, "auto"),  # pvt_v2_b0.py: drop_path=0.1; clip: Table 14
    ("pvt_v2_b2", "pvt_v2_b2", 0.1, False, 5.0, "auto"),  # pvt_v2_b2.py: drop_path=0.1; clip: Table 14
    ("pvt_v2_b3", "pvt_v2_b3", 0.3, False, 5.0, "auto"),  # pvt_v2_b3.py: drop_path=0.3; clip: Table 14
    ("pvt_v2_b5", "pvt_v2_b5", 0.3, False, 5.0, "auto"),  # pvt_v2_b5.py: drop_path=0.3; clip: Table 14
]


@pytest.mark.parametrize("model,stem,drop_path,ema,clip,amp", TABLE_14)
def test_paper_preset_per_model(model, stem, drop_path, ema, clip, amp):
    path = paper_preset(model)
    assert os.path.basename(path) == f"{stem}.yaml"
    cfg = load_config(path)
    assert (cfg.model.drop_path, cfg.train.ema, cfg.optim.clip_grad, cfg.train.amp) == (drop_path, ema, clip, amp)
    # the common recipe (ET_training.py: --lr 4e-3 at an effective batch of 4096 (update_freq = 4096 / GPUs /
    # batch), --warmup_epochs 20, --epochs 300; main.py defaults: weight decay 0.05, smoothing 0.1, mixup 0.8,
    # cutmix 1.0, reprob 0.25, EMA decay 0.9999, min lr 1e-6)
    o, a, t = cfg.optim, cfg.aug, cfg.train
    assert (o.base_lr, o.base_batch, o.warmup_epochs, o.weight_decay, o.min_lr) == (4e-3, 4096, 20, 0.05, 1e-6)
    assert (a.smoothing, a.mixup, a.cutmix, a.reprob, t.ema_decay, t.epochs) == (0.1, 0.8, 1.0, 0.25, 0.9999, 300)
    assert cfg.model.name == model.split(".")[0]
    # the paper's batch of 4096 (Table 14) on any number of GPUs: accumulation makes up the rest
    assert (t.global_batch, t.accum_steps, t.batch_size) == (4096, "auto", 128)


def test_imagenet_paper_yaml_is_table_14s_resnet50_row():
    # docs/training.md's headline command trains configs/imagenet_paper.yaml as "the paper's recipe": Table 14's
    # ResNet-50 row (drop path 0, no EMA, no clipping, AMP), the same configuration as --preset paper --model resnet50
    paper = load_config(os.path.join(REPO, "configs", "imagenet_paper.yaml"))
    assert (paper.model.drop_path, paper.train.ema, paper.optim.clip_grad, paper.train.amp) == (0.0, False, None, "auto")
    assert paper == load_config(paper_preset("resnet50"))


def test_every_shipped_preset_is_in_the_table_and_loads():
    assert set(paper_presets()) == {stem for _, stem, *_ in TABLE_14} | {"pvt_v2_b1", "pvt_v2_b4"}
    for path in paper_presets().values():
        load_config(path)


# EfficientTrain++ appendix A.2 (IN-22K pre-training): 120 epochs, a 5-epoch linear warm-up, drop path 0.1 for all
# four models, CSWin-Base/Large lr 2e-3 with weight decay 0.05 / 0.1, no EMA (following ConvNeXt). ConvNeXt's lr and
# weight decay: ConvNeXt's own IN-22K recipe (lr 4e-3, wd 0.05 at batch 4096), which A.2 follows. AMP: Table 14.
# Columns: preset stem, model, lr, weight decay, amp.
IMAGENET_22K = [
    ("cswin_base_224", "cswin_base_224", 2e-3, 0.05, "auto"),
    ("cswin_large_224", "cswin_large_224", 2e-3, 0.1, "auto"),
    ("convnext_base", "convnext_base", 4e-3, 0.05, "off"),
    ("convnext_large", "convnext_large", 4e-3, 0.05, "off"),
]


@pytest.mark.parametrize("stem,model,lr,wd,amp", IMAGENET_22K)
def test_imagenet22k_pretrain_presets_are_appendix_a2(stem, model, lr, wd, amp):
    from efficienttrain_ext.engine.recipe import drop_path_rate

    cfg = load_config(os.path.join(REPO, "configs", "imagenet22k", f"{stem}_pretrain.yaml"))
    o, t = cfg.optim, cfg.train
    assert (cfg.model.name, cfg.curriculum.name) == (model, "efficienttrain++")
    assert (t.epochs, o.warmup_epochs, o.warmup_fraction, cfg.model.drop_path) == (120, 5, None, 0.1)
    assert drop_path_rate(cfg) == 0.1  # as given: not scaled by budget / 200 like the 1K ++ scripts
    assert (o.opt, o.base_lr, o.base_batch, o.weight_decay, t.global_batch, t.accum_steps) == \
        ("adamw", lr, 4096, wd, 4096, "auto")
    assert o.lr is None  # lr = base_lr x global batch / 4096: 2e-3 (CSWin) / 4e-3 (ConvNeXt) at 4096
    assert (t.ema, t.amp, o.clip_grad, o.sched, o.min_lr) == (False, amp, None, "cosine", 1e-6)
    # the common recipe (Table 14): augmentation and label smoothing as on IN-1K
    a = cfg.aug
    assert (a.smoothing, a.mixup, a.cutmix, a.reprob, a.randaugment) == (0.1, 0.8, 1.0, 0.25, "rand-m9-mstd0.5-inc1")


def test_imagenet22k_presets_cover_the_papers_models():
    stems = {f[:-len("_pretrain.yaml")] for f in os.listdir(os.path.join(REPO, "configs", "imagenet22k"))
             if f.endswith("_pretrain.yaml")}
    assert stems == {stem for stem, *_ in IMAGENET_22K}


@pytest.mark.parametrize("m,s", [(m, s) for m in ("base", "large") for s in (224, 384)])
def test_imagenet22k_finetune_presets(m, s):
    ft = load_config(os.path.join(REPO, "configs", "imagenet22k", f"cswin_{m}_{s}_ft1k.yaml"))
    # LeapLabTHU/EfficientTrain EVAL.md, fine-tuning IN-22K models: --drop_path 0.2 --weight_decay 1e-8
    # --batch_size 64 (x 8 GPUs) --lr 5e-5 --warmup_epochs 0 --epochs 30 --cutmix 0 --mixup 0
    # --layer_decay 0.9 --use_amp true --model_ema true --model_ema_decay 0.9998 --input_size 224 / 384
    o, t = ft.optim, ft.train
    assert (ft.model.drop_path, o.weight_decay, o.base_lr, o.base_batch, o.warmup_epochs, o.layer_decay) == \
        (0.2, 1e-8, 5e-5, 512, 0, 0.9)
    assert (t.epochs, t.batch_size, t.global_batch, ft.aug.mixup, ft.aug.cutmix) == (30, 64, 512, 0.0, 0.0)
    assert (t.ema, t.ema_decay, t.amp, o.clip_grad) == (True, 0.9998, "auto", None)
    assert (ft.model.name, ft.data.final_size, ft.curriculum.name) == (f"cswin_{m}_{s}", s, "none")
    assert ft.data.crop_pct is None  # at 384: the authors' warp to 384 x 384 (item 7)


def test_preset_paper_on_the_command_line(capsys):
    args = cli.build_parser().parse_args(["train", "--preset", "paper", "--model", "swin_tiny_patch4_window7_224",
                                          "--set", "train.epochs=100"])
    cfg = cli._config(args)
    assert "configs/imagenet/swin_tiny.yaml" in capsys.readouterr().out  # it says which file
    assert (cfg.model.drop_path, cfg.optim.clip_grad, cfg.train.epochs) == (0.2, 5.0, 100)  # --set still wins
    # the real command, end to end (ResNet-50 at a small final size: the FLOP count stays cheap)
    assert cli.main(["schedule", "--preset", "paper", "--model", "resnet50", "--final-size", "64",
                     "--epochs", "10"]) == 0
    out = capsys.readouterr().out
    assert "configs/imagenet/resnet50.yaml" in out and "model resnet50" in out


def test_preset_errors(capsys):
    assert cli.main(["train", "--preset", "paper", "--model", "resnet50d"]) == 2
    assert "no paper preset for model 'resnet50d'" in capsys.readouterr().err
    assert cli.main(["train", "--preset", "paper"]) == 2
    assert "give --model" in capsys.readouterr().err
    assert cli.main(["train", "--preset", "paper", "--model", "resnet50", "-c", "configs/imagenet_paper.yaml"]) == 2
    assert "not both" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--preset", "papers"])
    with pytest.raises(ConfigError, match="missing"):
        paper_presets("/nonexistent/configs/imagenet")


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")
def test_a_run_started_before_the_change_resumes_with_its_erasing_order(tmp_path, capsys):
    """A checkpoint written before aug.erasing_order existed erased at size B: resumed, it keeps that order."""
    assert with_legacy_defaults({"aug": {"reprob": 0.25}}) == {"aug": {"reprob": 0.25, "erasing_order": "after_crop"}}
    assert with_legacy_defaults({"aug": {"erasing_order": "before_crop"}})["aug"]["erasing_order"] == "before_crop"
    args = tiny_args(tmp_path, "old", "--curriculum", "none", epochs=1, subset=32, val=32)
    assert cli.main(args) == 0
    last = tmp_path / "old" / "last.pt"
    ck = ckpt_io.load(last)
    ck["config"]["aug"].pop("erasing_order")  # as an older version wrote it
    ck["fingerprint"] = ckpt_io.fingerprint({s: v for s, v in ck["config"].items()})
    ckpt_io.save_atomic(ck, last)
    assert ckpt_io.load(last)["config"]["aug"]["erasing_order"] == "after_crop"
    assert cli.main(["train", "--resume", str(tmp_path / "old")]) == 0, capsys.readouterr().err
    assert "erasing_order: after_crop" in (tmp_path / "old" / "config.yaml").read_text()
    # the same command resumes it as it started; switching the order mid-run is another configuration: refused
    assert cli.main([*args, "--resume", str(tmp_path / "old")]) == 0
    assert cli.main([*args, "--resume", str(tmp_path / "old"), "--set", "aug.erasing_order=before_crop"]) == 2
    assert "aug.erasing_order: 'after_crop' -> 'before_crop'" in capsys.readouterr().err


def test_integrations_erase_in_the_same_order(gen):
    """CurriculumBatch (own loops, timm's train.py, the Lightning callback) runs the same batch path as etrain."""
    x = torch.randint(0, 256, (3, 3, 32, 32), generator=gen, dtype=torch.uint8)
    schedule = build_schedule("efficienttrain", 10, 32)  # B = 23 in the first epoch
    for order in ("before_crop", "after_crop"):
        erasing = RandomErasing(1.0, mode="pixel", device="cpu")
        step = CurriculumBatch(schedule, MEAN, STD, randaugment=None, erasing=erasing, erasing_order=order)
        _seed(5)
        got = step(x, epoch=0, step=0, steps=1)
        _seed(5)
        want, _ = _erasing_pipeline(order).train(x, torch.zeros(3, dtype=torch.long), 23, 0.0)
        assert got.shape == (3, 3, 23, 23)
        torch.testing.assert_close(got, want, atol=0, rtol=0)
    with pytest.raises(ValueError, match="erasing_order must be one of"):
        CurriculumBatch(schedule, erasing_order="both")


# ----- issue 27: the EfficientTrain++ presets (--preset paper --curriculum efficienttrain++)

# LeapLabTHU/EfficientTrain _ET_pp_main_*.py, as written there: script, --lr (at 4096), --opt, --opt_eps,
# --weight_decay, --model_ema_decay (None: main_buffer.py's defaults adamw / 1e-8 / 0.05 / 0.9999), warm-up
# (20: `rp_warmup_epoch = int(20 / ...)`; 0.2: `int(0.2 * rp_epoch)`). Every script: parser '--epoch', default=200.
ETPP_SCRIPTS = {
    "resnet50": ("_ET_pp_main_res50.py", 4e-3, None, None, None, None, 20),
    "convnext_tiny": ("_ET_pp_main_convnextT.py", 4e-3, None, None, None, None, 20),
    "convnext_small": ("_ET_pp_main_convnextS.py", 4e-3, None, None, None, None, 20),
    "convnext_base": ("_ET_pp_main_convnextB.py", 4e-3, None, None, None, None, 20),
    "deit_small": ("_ET_pp_main_deitS.py", 4e-3, None, None, None, None, 0.2),
    "swin_tiny": ("_ET_pp_main_swinT.py", 4e-3, None, None, None, None, 20),
    "swin_small": ("_ET_pp_main_swinS.py", 4e-3, None, None, None, None, 20),
    "swin_base": ("_ET_pp_main_swinB.py", 4e-3, None, None, None, None, 20),
    "cswin_tiny": ("_ET_pp_main_cswinT.py", 4e-3, None, None, None, None, 20),
    "cswin_small": ("_ET_pp_main_cswinS.py", 4e-3, None, None, None, None, 20),
    "cswin_base": ("_ET_pp_main_cswinB.py", 8e-3, "lamb", 1e-6, 0.1, 0.9998, 20),
}
# models without a released ++ script: DeiT-T takes DeiT-S's (0.2 warm-up), PVT-v2 the common one
ETPP_OTHERS = {"deit_tiny": 0.2, **{f"pvt_v2_b{i}": 20 for i in range(6)}}


@pytest.mark.parametrize("model,stem", [(m, s) for m, s, *_ in TABLE_14] + [("pvt_v2_b1", "pvt_v2_b1"),
                                                                           ("pvt_v2_b4", "pvt_v2_b4")])
def test_etpp_preset_per_model_is_the_authors_script(model, stem):
    path = paper_preset(model, curriculum="efficienttrain++")
    assert path == os.path.join(REPO, "configs", "imagenet_etpp", f"{stem}.yaml")
    cfg, base = load_config(path), load_config(paper_preset(model))
    _, lr, opt, eps, wd, ema_decay, warmup = ETPP_SCRIPTS.get(stem, (None, 4e-3, None, None, None, None,
                                                                     ETPP_OTHERS.get(stem)))
    o, t = cfg.optim, cfg.train
    assert (cfg.curriculum.name, t.epochs) == ("efficienttrain++", 200)  # the scripts' budget
    assert (o.base_lr, o.base_batch, t.global_batch, t.accum_steps) == (lr, 4096, 4096, "auto")
    assert (o.opt, o.eps, o.weight_decay, t.ema_decay) == (opt or "adamw", eps, wd or 0.05, ema_decay or 0.9999)
    if warmup == 0.2:
        assert o.warmup_fraction == 0.2
    else:
        assert (o.warmup_fraction, o.warmup_epochs) == (None, warmup)
    # the model's Table 14 row underneath (drop path scaled by budget / 200 at run time: 1.0 at the default 200)
    assert (cfg.model.name, cfg.model.drop_path, t.ema, o.clip_grad, t.amp) == \
        (base.model.name, base.model.drop_path, base.train.ema, base.optim.clip_grad, base.train.amp)


def test_every_paper_preset_has_an_etpp_twin():
    etpp = paper_presets(os.path.join(REPO, "configs", "imagenet_etpp"))
    assert set(etpp) == set(paper_presets()) == set(ETPP_SCRIPTS) | set(ETPP_OTHERS)


def test_preset_paper_etpp_on_the_command_line(capsys):
    # the issue's command: DeiT-S under ++ warms up over 20% of the schedule, with the scripts' budget of 200
    args = cli.build_parser().parse_args(["train", "--preset", "paper", "--model", "deit_small_patch16_224",
                                          "--curriculum", "efficienttrain++"])
    cfg = cli._config(args)
    assert "configs/imagenet_etpp/deit_small.yaml" in capsys.readouterr().out
    assert (cfg.optim.warmup_fraction, cfg.train.epochs, cfg.curriculum.name) == (0.2, 200, "efficienttrain++")
    args = cli.build_parser().parse_args(["train", "--preset", "paper", "--model", "cswin_base_224",
                                          "--curriculum", "efficienttrain++", "--epochs", "300"])
    cfg = cli._config(args)
    assert (cfg.optim.opt, cfg.optim.eps, cfg.optim.weight_decay, cfg.train.ema_decay, cfg.train.epochs) == \
        ("lamb", 1e-6, 0.1, 0.9998, 300)
    # without --curriculum efficienttrain++: the Table 14 preset (efficienttrain, 300 epochs)
    cfg = cli._config(cli.build_parser().parse_args(["train", "--preset", "paper", "--model", "cswin_base_224"]))
    assert (cfg.optim.opt, cfg.curriculum.name, cfg.train.epochs) == ("adamw", "efficienttrain", 300)


def test_optim_eps_reaches_the_optimizer(tmp_path):
    from efficienttrain_ext.engine import Trainer

    from _etrain_helpers import make_image_folder

    folder = make_image_folder(tmp_path / "data", per_class=4, size=32)
    for opt, eps in (("lamb", 1e-5), ("adamw", None)):  # (timm's LAMB default is 1e-6)
        cfg = load_config(None, ["model.name=resnet10t", f"data.root={folder}", "data.workers=0", f"optim.opt={opt}",
                                 f"optim.eps={'null' if eps is None else eps}", "curriculum.name=none",
                                 "train.epochs=1", "train.batch_size=4", "train.progress=false",
                                 f"train.output={tmp_path}"])
        optimizer = Trainer(cfg, run_dir=str(tmp_path / f"{opt}{eps}")).optimizer
        assert type(optimizer).__name__.lower() == opt
        assert optimizer.defaults["eps"] == (eps if eps is not None else 1e-8)  # torch AdamW's default
    with pytest.raises(ConfigError, match="optim.eps"):
        load_config(None, ["optim.eps=0"])


def test_mae_finetune_defaults_are_maes_vit_b_recipe():
    # He et al. 2022 Table 9 / facebookresearch/mae main_finetune.py for ViT-B: layer decay 0.65, weight decay 0.05,
    # 5 warm-up epochs, 100 epochs, lr 5e-4 at 256, no EMA, no gradient clipping (clip_grad default None)
    from efficienttrain_ext.engine.finetune import FINETUNE_DEFAULTS

    cfg = load_config(None, base=FINETUNE_DEFAULTS)
    o = cfg.optim
    assert (o.layer_decay, o.weight_decay, o.warmup_epochs, o.base_lr, o.base_batch) == (0.65, 0.05, 5, 5e-4, 256)
    assert (cfg.train.epochs, cfg.train.ema, o.clip_grad, cfg.curriculum.name) == (100, False, None, "none")
