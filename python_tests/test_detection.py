"""MMDetection glue (detection/): TimmBackbone, weight loading/export, configs, deepforest smoke run.

Skipped unless the detection stack is installed (``bash scripts/install_detection.sh``).
"""

from __future__ import annotations

import glob
import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmcv._ext", reason="mmcv without compiled ops (mmcv-lite) cannot run mmdet models")

from _etrain_helpers import REPO, make_image_folder, tiny_args  # noqa: E402

DET = os.path.join(REPO, "detection")
CONFIGS = os.path.join(DET, "configs")
sys.path.insert(0, DET)

from mmdet.registry import MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.config import Config  # noqa: E402

import etrain_mmdet  # noqa: E402
from etrain_mmdet import TimmBackbone, WeightsError  # noqa: E402

register_all_modules(init_default_scope=True)

COCO_CONFIGS = sorted(glob.glob(os.path.join(CONFIGS, "*_coco.py")))
SMOKE = os.path.join(CONFIGS, "smoke_retinanet_deepforest.py")


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def etrain_run(tmp_path_factory):
    """A real `etrain train` run (resnet18, 1 epoch on a tiny ImageFolder): checkpoint with model + EMA."""
    from efficienttrain_ext import cli

    tmp = tmp_path_factory.mktemp("etrain")
    root = make_image_folder(tmp / "data")
    args = tiny_args(tmp, "r18", "--dataset", "imagefolder", "--data-root", str(root), "--curriculum", "none",
                     subset=24, val=12, batch=8, epochs=1, model=("--model", "resnet18"))
    assert cli.main(args) == 0
    return tmp / "r18"


@pytest.fixture(scope="module")
def deepforest_coco(tmp_path_factory):
    out = tmp_path_factory.mktemp("deepforest_coco")
    proc = subprocess.run([sys.executable, os.path.join(DET, "tools", "deepforest_to_coco.py"), "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.skip(f"deepforest wheel not available: {proc.stderr[-500:]}")
    return out


def _ckpt(run):
    from efficienttrain_ext.engine.checkpoint import load

    return load(run)


# ---------------------------------------------------------------------------------------------- configs
def test_configs_exist():
    names = {os.path.basename(p) for p in COCO_CONFIGS}
    for bb in ("r50", "swin-t", "convnext-t"):
        for det in ("retinanet_timm-{}_fpn_1x_coco.py", "cascade-mask-rcnn_timm-{}_fpn_1x_coco.py",
                    "cascade-mask-rcnn_timm-{}_fpn_ms-3x_coco.py"):
            assert det.format(bb) in names
    for bb in ("swin-s", "swin-b"):  # the EfficientTrain++ COCO table has Cascade Mask R-CNN with Swin-T/S/B
        for det in ("cascade-mask-rcnn_timm-{}_fpn_1x_coco.py", "cascade-mask-rcnn_timm-{}_fpn_ms-3x_coco.py"):
            assert det.format(bb) in names


@pytest.mark.parametrize("path", COCO_CONFIGS, ids=os.path.basename)
def test_config_backbone_builds(path):
    cfg = Config.fromfile(path)
    assert cfg.model.backbone.type == "TimmBackbone"
    assert cfg.data_root == "data/coco/"
    assert cfg.val_evaluator.ann_file == "data/coco/annotations/instances_val2017.json"
    bb = MODELS.build(cfg.model.backbone)
    assert isinstance(bb, TimmBackbone)
    bb.eval()
    with torch.no_grad():
        feats = bb(torch.randn(1, 3, 128, 160))
    neck_in = cfg.model.neck.in_channels
    assert [f.shape[1] for f in feats] == list(neck_in)
    for f, s in zip(feats, bb.strides):
        assert f.shape[2:] == (128 // s, 160 // s)
    if "3x" in path:  # RepeatDataset wrapper
        assert cfg.train_dataloader.dataset.dataset.data_root == "data/coco/"


def test_set_data_root():
    from etrain_mmdet.config_utils import set_data_root

    for name in ("retinanet_timm-r50_fpn_1x_coco.py", "cascade-mask-rcnn_timm-swin-t_fpn_ms-3x_coco.py"):
        cfg = Config.fromfile(os.path.join(CONFIGS, name))
        set_data_root(cfg, "/data/coco2017")
        train = cfg.train_dataloader.dataset
        train = train.get("dataset", train)
        assert train.data_root == "/data/coco2017/"
        assert cfg.val_dataloader.dataset.data_root == "/data/coco2017/"
        assert cfg.test_evaluator.ann_file == "/data/coco2017/annotations/instances_val2017.json"


# The last commit whose 9 COCO configs each repeated the header and the AdamW block (before configs/_base_/).
CONFIGS_BEFORE_BASES = "a1e42505c1a6d603629bb6dce797b26c54214ee3"
# The ResNet-50 configs keep mmdet's recipe and must still resolve exactly as then; Swin / ConvNeXt moved to their
# papers' recipe on purpose (issue 20) and are checked value by value in test_detection_recipes.py.
R50_CONFIGS = [p for p in COCO_CONFIGS if "-r50_" in os.path.basename(p)]


def _config_before_bases(name: str, tmp_path) -> dict:
    if not os.path.isdir(os.path.join(REPO, ".git")) and not os.path.isfile(os.path.join(REPO, ".git")):
        pytest.skip("not a git checkout: the configs before configs/_base_ come from git history")
    proc = subprocess.run(["git", "-C", REPO, "show", f"{CONFIGS_BEFORE_BASES}:detection/configs/{name}"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"git show failed (a shallow clone? `git fetch --unshallow`): {proc.stderr}"
    old = tmp_path / name
    old.write_text(proc.stdout)
    assert "_base_ = 'mmdet::" in proc.stdout  # self-contained: inherits only mmdet's bundled configs
    return Config.fromfile(str(old)).to_dict()


@pytest.mark.parametrize("path", R50_CONFIGS, ids=os.path.basename)
def test_config_resolves_as_before_shared_bases(path, tmp_path):
    """The configs share configs/_base_/ files now; every resolved key (model, optim_wrapper, param_scheduler,
    train_cfg, dataloaders, evaluators, hooks, ...) must equal what the self-contained file resolved to."""
    before = _config_before_bases(os.path.basename(path), tmp_path)
    after = Config.fromfile(path).to_dict()
    assert set(after) == set(before), sorted(set(after) ^ set(before))
    for key in sorted(before):  # key by key, so a failure names the section
        assert after[key] == before[key], key


@pytest.mark.parametrize("path", R50_CONFIGS, ids=os.path.basename)
def test_config_optimizer_and_schedule(path):
    """Frozen key fields of the R-50 configs (also checked without git history): mmdet's SGD recipe (Swin /
    ConvNeXt: test_detection_recipes.py)."""
    cfg = Config.fromfile(path)
    name = os.path.basename(path)
    opt = cfg.optim_wrapper.optimizer
    sgd_lr = 0.01 if name.startswith("retinanet") else 0.02
    assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == ("SGD", sgd_lr, 0.9, 0.0001)
    assert "paramwise_cfg" not in cfg.optim_wrapper
    assert cfg.train_cfg.max_epochs == 12  # 3x = 12 epochs over RepeatDataset(times=3)
    train_set = cfg.train_dataloader.dataset
    assert (train_set.type, train_set.get("times")) == (("RepeatDataset", 3) if "ms-3x" in name else ("CocoDataset", None))
    assert cfg.model.backbone.checkpoint is None and cfg.model.backbone.weights == "auto"
    assert cfg.custom_imports == dict(imports=["etrain_mmdet"], allow_failed_imports=False)


# ---------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name,kw,strides,channels", [
    ("resnet50", dict(out_strides=(4, 8, 16, 32)), (4, 8, 16, 32), (256, 512, 1024, 2048)),
    ("resnet50", dict(), (8, 16, 32), (512, 1024, 2048)),
    ("swin_tiny_patch4_window7_224", dict(out_strides=(4, 8, 16, 32)), (4, 8, 16, 32), (96, 192, 384, 768)),
    ("convnext_tiny", dict(out_indices=(1, 2, 3)), (8, 16, 32), (192, 384, 768)),
    ("pvt_v2_b0", dict(out_strides=(4, 8, 16, 32)), (4, 8, 16, 32), (32, 64, 160, 256)),
    ("caformer_s18", dict(), (8, 16, 32), (128, 320, 512)),
    ("cswin_tiny_224", dict(out_strides=(4, 8, 16, 32)), (4, 8, 16, 32), (64, 128, 256, 512)),
])
def test_feature_shapes_and_strides(name, kw, strides, channels):
    bb = TimmBackbone(model_name=name, **kw).eval()
    assert bb.strides == strides and bb.channels == channels
    for h, w in ((224, 224), (256, 320), (96, 160)):
        with torch.no_grad():
            feats = bb(torch.randn(2, 3, h, w))
        assert len(feats) == len(strides)
        for f, s, c in zip(feats, strides, channels):
            assert tuple(f.shape) == (2, c, math.ceil(h / s), math.ceil(w / s)), (name, h, w, s, f.shape)
            assert f.is_contiguous()


# ---------------------------------------------------------------------------------------------- weights
@pytest.mark.parametrize("which", ["model", "ema"])
def test_weights_from_etrain_checkpoint(etrain_run, which):
    ck = _ckpt(etrain_run)
    src = ck[which]
    other = ck["ema" if which == "model" else "model"]
    bb = TimmBackbone(model_name="resnet18", checkpoint=str(etrain_run / "last.pt"), weights=which)
    sd = bb.body.state_dict()
    assert bb.load_info["weights"] == which
    assert set(sd) <= set(src)  # features_only keeps resnet keys, drops fc
    for k, v in sd.items():
        assert torch.equal(v, src[k]), k
    assert any(not torch.equal(sd[k], other[k]) for k in sd if sd[k].is_floating_point())


def test_model_name_from_checkpoint_and_auto_prefers_ema(etrain_run):
    ck = _ckpt(etrain_run)
    bb = TimmBackbone(checkpoint=str(etrain_run))  # run directory, architecture from the checkpoint config
    assert bb.model_name == "resnet18" and bb.load_info["weights"] == "ema"
    assert torch.equal(bb.body.state_dict()["layer3.0.conv1.weight"], ck["ema"]["layer3.0.conv1.weight"])


def test_export_and_mmengine_pretrained_loads_it(etrain_run, tmp_path):
    """The export is plain tensors (weights_only-safe) and mmengine's own loader fills every backbone tensor."""
    from mmengine.runner.checkpoint import load_checkpoint

    out = tmp_path / "r18_mmdet.pth"
    proc = subprocess.run([sys.executable, os.path.join(DET, "tools", "export_mmdet.py"), str(etrain_run), "--ema",
                           "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    blob = torch.load(out, weights_only=True)  # plain tensors only
    assert blob["meta"]["model_name"] == "resnet18" and blob["meta"]["weights"] == "ema"
    ema = _ckpt(etrain_run)["ema"]

    # 1. mmengine's generic loader (what init_cfg=Pretrained does for ordinary modules), on torch 2.14 defaults
    bb = TimmBackbone(model_name="resnet18")
    load_checkpoint(bb, str(out), map_location="cpu", strict=True)
    for k, v in bb.body.state_dict().items():
        assert torch.equal(v, ema[k]), k
    # 2. init_cfg=Pretrained through a built detector backbone (strict, via TimmBackbone.init_weights)
    bb2 = MODELS.build(dict(type="TimmBackbone", model_name="resnet18",
                            init_cfg=dict(type="Pretrained", checkpoint=str(out))))
    bb2.init_weights()
    for k, v in bb2.body.state_dict().items():
        assert torch.equal(v, ema[k]), k
    # 3. constructor argument
    bb3 = TimmBackbone(model_name="resnet18", out_strides=(16, 32), checkpoint=str(out))
    assert torch.equal(bb3.body.state_dict()["layer4.1.bn2.running_var"], ema["layer4.1.bn2.running_var"])


def test_timm_state_dict(tmp_path):
    import timm

    ref = timm.create_model("convnext_atto", num_classes=7)
    path = tmp_path / "convnext_atto.pth"
    torch.save({"state_dict": ref.state_dict()}, path)
    bb = TimmBackbone(model_name="convnext_atto", checkpoint=str(path))
    for k, v in bb.body.state_dict().items():  # stages_0... <- stages.0...
        assert torch.equal(v, ref.state_dict()[k.replace("stages_", "stages.").replace("stem_", "stem.")]), k


def test_bad_inputs(etrain_run, tmp_path):
    with pytest.raises(WeightsError, match=r"trained as 'resnet18'.*does not fit timm model 'resnet50'.*missing"):
        TimmBackbone(model_name="resnet50", checkpoint=str(etrain_run))
    with pytest.raises(WeightsError, match="weights file .*nope.pth not found"):
        TimmBackbone(model_name="resnet18", checkpoint=str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsError, match="unknown timm model 'resnet_does_not_exist'"):
        MODELS.build(dict(type="TimmBackbone", model_name="resnet_does_not_exist"))
    with pytest.raises(WeightsError, match="no features at strides"):
        TimmBackbone(model_name="resnet18", out_strides=(64,))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        TimmBackbone(model_name="resnet18", checkpoint=str(junk))
    # an unknown model in a detector config fails at build time with the name in the message
    cfg = Config.fromfile(os.path.join(CONFIGS, "retinanet_timm-r50_fpn_1x_coco.py"))
    cfg.model.backbone.model_name = "resnet_does_not_exist"
    with pytest.raises(Exception, match="unknown timm model 'resnet_does_not_exist'"):
        MODELS.build(cfg.model)


def test_frozen_stages_and_norm_eval():
    bb = TimmBackbone(model_name="resnet18", out_strides=(8, 16, 32), frozen_stages=1, norm_eval=True)
    bb.train()
    assert not bb.body.conv1.weight.requires_grad and not bb.body.layer1[0].conv1.weight.requires_grad
    assert bb.body.layer2[0].conv1.weight.requires_grad
    assert not bb.body.layer3[0].bn1.training


# ---------------------------------------------------------------------------------------------- detectors
def test_cascade_mask_rcnn_forward_backward_predict():
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    from mmdet.structures.mask import BitmapMasks

    cfg = Config.fromfile(os.path.join(CONFIGS, "cascade-mask-rcnn_timm-convnext-t_fpn_1x_coco.py"))
    cfg.model.backbone.model_name = "convnext_atto"  # same family, small enough for a CPU test
    cfg.model.neck.in_channels = [40, 80, 160, 320]
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.manual_seed(0)
    h = w = 160
    samples = []
    for _ in range(2):
        s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), scale_factor=(1., 1.),
                                        batch_input_shape=(h, w)))
        boxes = torch.tensor([[10., 20., 70., 90.], [80., 40., 150., 150.]])
        masks = torch.zeros(2, h, w, dtype=torch.uint8)
        for i, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
            masks[i, y0:y1, x0:x1] = 1
        s.gt_instances = InstanceData(bboxes=boxes, labels=torch.tensor([1, 5]), masks=BitmapMasks(masks.numpy(), h, w))
        samples.append(s)
    x = torch.randn(2, 3, h, w)
    model.train()
    losses = model.loss(x, samples)
    total = sum(v.sum() for k, v in losses.items() if "loss" in k and isinstance(v, torch.Tensor)) + \
        sum(t.sum() for k, v in losses.items() if "loss" in k and isinstance(v, list) for t in v)
    assert torch.isfinite(total)
    assert any(k.startswith("s2.loss_mask") or k.endswith("loss_mask") for k in losses), sorted(losses)
    total.backward()
    assert model.backbone.body.stem_0.weight.grad is not None
    model.eval()
    with torch.no_grad():
        out = model.predict(x, samples)
    assert len(out) == 2 and hasattr(out[0].pred_instances, "masks")


def test_deepforest_conversion(deepforest_coco):
    coco = json.load(open(deepforest_coco / "annotations.json"))
    assert len(coco["images"]) == 3 and len(coco["annotations"]) == 177
    assert {c["name"] for c in coco["categories"]} == {"Tree", "Dead", "Alive"}
    for img in coco["images"]:
        assert (deepforest_coco / "images" / img["file_name"]).is_file()
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0


SMOKE_ITERS = int(os.environ.get("ETRAIN_DET_SMOKE_ITERS", "120"))
SMOKE_BUDGET_S = float(os.environ.get("ETRAIN_DET_SMOKE_BUDGET_S", "900"))


def test_smoke_retinanet_deepforest_learns(deepforest_coco, tmp_path):
    """RetinaNet + FPN + TimmBackbone(resnet18) on the 3 deepforest photos, CPU: loss falls, bbox mAP reported."""
    from mmengine.runner import Runner

    cfg = Config.fromfile(SMOKE)
    from etrain_mmdet.config_utils import set_data_root

    set_data_root(cfg, str(deepforest_coco))
    cfg.work_dir = str(tmp_path / "work")
    cfg.train_cfg.max_iters = SMOKE_ITERS
    cfg.train_cfg.val_interval = SMOKE_ITERS + 1  # evaluated explicitly below
    cfg.default_hooks.checkpoint.interval = SMOKE_ITERS
    cfg.default_hooks.logger.interval = 5
    cfg.randomness = dict(seed=0)
    t0 = time.process_time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val_loop.run()
    cpu = time.process_time() - t0
    losses = [float(v) for v in runner.message_hub.get_scalar("train/loss").data[0]]
    assert len(losses) >= SMOKE_ITERS // 2
    k = max(5, len(losses) // 5)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    assert last < 0.8 * first, (first, last)
    assert "coco/bbox_mAP" in metrics, sorted(metrics)
    mAP = metrics["coco/bbox_mAP"]
    assert mAP > 0.0
    print(f"smoke: {SMOKE_ITERS} iters, loss {first:.3f} -> {last:.3f}, bbox mAP {mAP:.3f}, cpu {cpu:.0f}s")
    assert cpu < SMOKE_BUDGET_S


def test_convnext_recipe_config_trains_on_deepforest(deepforest_coco, tmp_path):
    """The ConvNeXt RetinaNet recipe config as a Runner builds it (custom_imports registers the layer-decay
    constructor, the multi-scale + crop pipeline reads real images and boxes): two AdamW steps, finite losses, param
    groups at 2e-4 x 0.7^(7 - layer id) (test_detection_recipes.py checks each parameter's multiplier)."""
    from mmengine.runner import Runner

    from etrain_mmdet.config_utils import set_data_root

    cfg = Config.fromfile(os.path.join(CONFIGS, "retinanet_timm-convnext-t_fpn_1x_coco.py"))
    cfg.model.backbone.model_name = "convnext_atto"  # same family, small enough for a CPU test
    cfg.model.neck.in_channels = [80, 160, 320]
    cfg.model.bbox_head.num_classes = 3
    set_data_root(cfg, str(deepforest_coco))
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.update(batch_size=1, num_workers=0, persistent_workers=False)
        loader.dataset.update(ann_file="annotations.json", data_prefix=dict(img="images/"),
                              metainfo=dict(classes=("Tree", "Dead", "Alive")))
    cfg.train_dataloader.batch_sampler = None
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=2, val_interval=100)
    cfg.param_scheduler = []
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger.interval = 1
    cfg.log_processor = dict(by_epoch=False)
    cfg.work_dir = str(tmp_path / "work")
    cfg.randomness = dict(seed=0)
    runner = Runner.from_cfg(cfg)
    runner.train()
    losses = runner.message_hub.get_scalar("train/loss").data[0]
    assert len(losses) == 2 and all(math.isfinite(float(v)) for v in losses)
    # ConvNeXt-atto (depths 2, 2, 6, 2) uses layer ids 0-4, 6 (stage 4) and 7 (neck, head); id 5 would be blocks 6-8
    lrs = sorted({round(g["lr"] / 2e-4, 9) for g in runner.optim_wrapper.optimizer.param_groups})
    assert lrs == sorted(round(0.7 ** (7 - i), 9) for i in (0, 1, 2, 3, 4, 6, 7))
