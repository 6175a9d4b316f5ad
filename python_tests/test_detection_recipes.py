"""Detection recipes of the Swin / ConvNeXt configs (issue 20 item 9): every value against the config it comes from.

Sources (cited once here, by the short names used in the comments below):
  SWIN-1X  SwinTransformer/Swin-Transformer-Object-Detection
           configs/swin/cascade_mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_1x_coco.py
  SWIN-3X  same repo, configs/swin/cascade_mask_rcnn_swin_{tiny,small,base}_patch4_window7_mstrain_480-800_giou_4conv1f_
           adamw_3x_coco.py
  CNX-3X   facebookresearch/ConvNeXt object_detection/configs/convnext/
           cascade_mask_rcnn_convnext_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco_in1k.py
  CNX-LD   facebookresearch/ConvNeXt object_detection/mmcv_custom/layer_decay_optimizer_constructor.py
  MMDET-CNX  open-mmlab/mmdetection configs/convnext/
             cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py
             (the mmdet 3.x port of CNX-3X: RandomChoice / RandomChoiceResize instead of AutoAugment / Resize lists)
  ISSUE-20 this project's issue 20 item 9 (RetinaNet: multi-scale with crop at lr 2e-4; the authors' detection code is
           not public, so there is no config to cite for that lr)

Skipped unless the detection stack is installed (``bash scripts/install_detection.sh``).
"""

from __future__ import annotations

import glob
import os
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmcv._ext", reason="mmcv without compiled ops (mmcv-lite) cannot run mmdet models")

from _etrain_helpers import REPO  # noqa: E402

DET = os.path.join(REPO, "detection")
CONFIGS = os.path.join(DET, "configs")
sys.path.insert(0, DET)

from mmdet.registry import MODELS, TRANSFORMS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from torch import nn  # noqa: E402

from etrain_mmdet import TimmBackbone, WeightsError  # noqa: E402
from etrain_mmdet.layer_decay import mmpretrain_convnext_name  # noqa: E402

register_all_modules(init_default_scope=True)

TRANSFORMER_CONFIGS = sorted(p for p in glob.glob(os.path.join(CONFIGS, "*_coco.py"))
                             if "-swin-" in p or "-convnext-" in p)
CASCADE = [p for p in TRANSFORMER_CONFIGS if "cascade" in os.path.basename(p)]
SWIN = [p for p in TRANSFORMER_CONFIGS if "-swin-" in p]
CONVNEXT = [p for p in TRANSFORMER_CONFIGS if "-convnext-" in p]

# SWIN-1X / SWIN-3X / CNX-3X (identical in all of them): short sides of both resize steps, the crop branch's first
# resize and its crop size range.
SHORT_SIDES_480_800 = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333), (672, 1333),
                       (704, 1333), (736, 1333), (768, 1333), (800, 1333)]
CROP_PRE_RESIZE = [(400, 1333), (500, 1333), (600, 1333)]
CROP_SIZE = (384, 600)
CASCADE_TARGET_STDS = ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])  # SWIN-3X, CNX-3X


def _name(path):
    return os.path.basename(path)


def _train_pipeline(cfg):
    ds = cfg.train_dataloader.dataset
    return ds.dataset.pipeline if ds.type == "RepeatDataset" else ds.pipeline


def test_config_sets_are_complete():
    names = {_name(p) for p in TRANSFORMER_CONFIGS}
    assert {f"cascade-mask-rcnn_timm-swin-{s}_fpn_{k}_coco.py" for s in "tsb" for k in ("1x", "ms-3x")} <= names
    assert len(CASCADE) == 8 and len(SWIN) == 7 and len(CONVNEXT) == 3


# ---------------------------------------------------------------------------------------------- heads
@pytest.mark.parametrize("path", CASCADE, ids=_name)
def test_cascade_heads_are_4conv1fc_syncbn_giou(path):
    heads = Config.fromfile(path).model.roi_head.bbox_head
    assert len(heads) == 3
    for head, stds in zip(heads, CASCADE_TARGET_STDS):  # SWIN-3X / CNX-3X roi_head.bbox_head
        assert head.type == "ConvFCBBoxHead"
        sizes = (head.num_shared_convs, head.num_shared_fcs, head.conv_out_channels, head.fc_out_channels)
        assert sizes == (4, 1, 256, 1024)
        assert head.norm_cfg == dict(type="SyncBN", requires_grad=True)
        assert head.loss_bbox == dict(type="GIoULoss", loss_weight=10.0)
        assert head.reg_decoded_bbox is True and head.reg_class_agnostic is False
        assert head.bbox_coder.target_stds == stds and head.num_classes == 80


def test_cascade_heads_build_with_syncbn_and_giou():
    """The config values become the modules they name (SyncBatchNorm after each shared conv, GIoU loss)."""
    from mmdet.models.losses import GIoULoss

    cfg = Config.fromfile(os.path.join(CONFIGS, "cascade-mask-rcnn_timm-swin-t_fpn_1x_coco.py"))
    head = MODELS.build(cfg.model.roi_head.bbox_head[0])
    assert len(head.shared_convs) == 4 and len(head.shared_fcs) == 1
    assert all(isinstance(c.norm, nn.SyncBatchNorm) for c in head.shared_convs)
    assert isinstance(head.loss_bbox, GIoULoss) and head.loss_bbox.loss_weight == 10.0


# ---------------------------------------------------------------------------------------------- pipeline
@pytest.mark.parametrize("path", TRANSFORMER_CONFIGS, ids=_name)
def test_train_pipeline_is_multiscale_with_crop_branch(path):
    cfg = Config.fromfile(path)
    pipe = _train_pipeline(cfg)
    types = [t.type for t in pipe]
    # SWIN-3X train_pipeline order (mmcv 2 names as MMDET-CNX): load, annotations, flip, the two-branch choice, pack
    assert types == ["LoadImageFromFile", "LoadAnnotations", "RandomFlip", "RandomChoice", "PackDetInputs"]
    assert pipe[1].get("with_mask", False) is ("cascade" in _name(path))
    assert pipe[2].prob == 0.5
    plain, crop = pipe[3].transforms
    assert [t.type for t in plain] == ["RandomChoiceResize"]
    assert [tuple(s) for s in plain[0].scales] == SHORT_SIDES_480_800 and plain[0].keep_ratio
    assert [t.type for t in crop] == ["RandomChoiceResize", "RandomCrop", "RandomChoiceResize"]
    assert [tuple(s) for s in crop[0].scales] == CROP_PRE_RESIZE
    assert (crop[1].crop_type, tuple(crop[1].crop_size), crop[1].allow_negative_crop) == ("absolute_range", CROP_SIZE, True)
    assert [tuple(s) for s in crop[2].scales] == SHORT_SIDES_480_800
    # evaluation stays single-scale 1333x800 (as SWIN-3X test_pipeline)
    test_resize = [t for t in cfg.test_dataloader.dataset.pipeline if t.type == "Resize"]
    assert [tuple(t.scale) for t in test_resize] == [(1333, 800)]


def test_crop_branch_runs_and_both_branches_occur():
    """Run the configured transform on a 1000x500 image: the plain branch keeps the 2:1 aspect ratio and a short
    side in 480..800; the crop branch (crop of at most 600 px, then resized) changes the aspect ratio."""
    from mmdet.structures.bbox import HorizontalBoxes

    cfg = Config.fromfile(os.path.join(CONFIGS, "retinanet_timm-swin-t_fpn_1x_coco.py"))
    choice = TRANSFORMS.build(_train_pipeline(cfg)[3])
    np.random.seed(0)
    short_sides = {s for s, _ in SHORT_SIDES_480_800}
    kept, cropped = 0, 0
    for _ in range(40):
        img = np.zeros((500, 1000, 3), np.uint8)
        boxes = HorizontalBoxes(torch.tensor([[100., 100., 400., 300.], [600., 50., 900., 450.]]))
        out = choice(dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2], gt_bboxes=boxes,
                          gt_bboxes_labels=np.array([0, 1], np.int64), gt_ignore_flags=np.array([False, False])))
        h, w = out["img"].shape[:2]
        assert min(h, w) in short_sides or max(h, w) == 1333, (h, w)
        if abs(w / h - 2.0) < 0.01:
            kept += 1
        else:
            cropped += 1
    assert kept > 5 and cropped > 5, (kept, cropped)


# ---------------------------------------------------------------------------------------------- optimizers
@pytest.mark.parametrize("path", SWIN, ids=_name)
def test_swin_optimizer(path):
    ow = Config.fromfile(path).optim_wrapper
    lr = 2e-4 if _name(path).startswith("retinanet") else 1e-4  # ISSUE-20 / SWIN-1X, SWIN-3X
    assert ow.type == "OptimWrapper" and "constructor" not in ow
    assert ow.optimizer == dict(type="AdamW", lr=lr, betas=(0.9, 0.999), weight_decay=0.05)  # SWIN-3X optimizer
    assert ow.paramwise_cfg == dict(custom_keys={"absolute_pos_embed": dict(decay_mult=0.0),
                                                 "relative_position_bias_table": dict(decay_mult=0.0),
                                                 "norm": dict(decay_mult=0.0)})


@pytest.mark.parametrize("path", CONVNEXT, ids=_name)
def test_convnext_optimizer(path):
    ow = Config.fromfile(path).optim_wrapper
    assert ow.constructor == "TimmLayerDecayOptimizerConstructor"
    assert ow.optimizer == dict(type="AdamW", lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05)  # CNX-3X / ISSUE-20
    assert ow.paramwise_cfg == dict(decay_rate=0.7, decay_type="layer_wise", num_layers=6)  # CNX-3X paramwise_cfg


# CNX-3X drop_path_rate 0.4; SWIN-1X (Swin-T 1x) 0.0; SWIN-3X Swin-T 0.2, Swin-S 0.2, Swin-B 0.3 (S/B 1x take the 3x
# value, the repo has no 1x config for them); RetinaNet Swin-T 0.2 as mmdet's
# configs/swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py
DROP_PATH = {
    "cascade-mask-rcnn_timm-convnext-t_fpn_1x_coco.py": 0.4, "cascade-mask-rcnn_timm-convnext-t_fpn_ms-3x_coco.py": 0.4,
    "retinanet_timm-convnext-t_fpn_1x_coco.py": 0.4,
    "cascade-mask-rcnn_timm-swin-t_fpn_1x_coco.py": 0.0, "cascade-mask-rcnn_timm-swin-t_fpn_ms-3x_coco.py": 0.2,
    "cascade-mask-rcnn_timm-swin-s_fpn_1x_coco.py": 0.2, "cascade-mask-rcnn_timm-swin-s_fpn_ms-3x_coco.py": 0.2,
    "cascade-mask-rcnn_timm-swin-b_fpn_1x_coco.py": 0.3, "cascade-mask-rcnn_timm-swin-b_fpn_ms-3x_coco.py": 0.3,
    "retinanet_timm-swin-t_fpn_1x_coco.py": 0.2,
}


@pytest.mark.parametrize("path", TRANSFORMER_CONFIGS, ids=_name)
def test_backbone_drop_path_out_norms_and_schedule(path):
    cfg = Config.fromfile(path)
    name = _name(path)
    bb = cfg.model.backbone
    assert bb.model_kwargs.drop_path_rate == DROP_PATH[name]
    # the Swin / ConvNeXt detection backbones put a LayerNorm on every output (norm{i}; eps 1e-5 Swin, 1e-6 ConvNeXt)
    assert bb.out_norm_eps == (1e-5 if "-swin-" in name else 1e-6)
    epochs = cfg.train_cfg.max_epochs
    steps = next(s for s in cfg.param_scheduler if s.type == "MultiStepLR").milestones
    times = cfg.train_dataloader.dataset.get("times", 1)
    if "ms-3x" in name:  # SWIN-3X / CNX-3X: max_epochs=36, step=[27, 33] (here: 12 epochs over RepeatDataset x3)
        assert (epochs * times, [m * times for m in steps]) == (36, [27, 33])
    else:  # SWIN-1X: max_epochs=12, step=[8, 11]
        assert (times, epochs, steps) == (1, 12, [8, 11])
    warmup = next(s for s in cfg.param_scheduler if s.type == "LinearLR")
    assert (warmup.start_factor, warmup.end, warmup.by_epoch) == (0.001, 500, False)  # mmdet schedule_1x warm-up


def _param_groups_by_name(optim_wrapper):
    out = {}
    for g in optim_wrapper.optimizer.param_groups:
        for p in g["params"]:
            out[id(p)] = g
    return out


def test_swin_no_decay_params_in_built_optimizer():
    """Built from the Swin-T config: weight decay 0 exactly on the LayerNorms (backbone and out_norms) and the
    relative position tables; biases and the heads' SyncBN keep 0.05 (SWIN-3X custom_keys only)."""
    cfg = Config.fromfile(os.path.join(CONFIGS, "cascade-mask-rcnn_timm-swin-t_fpn_1x_coco.py"))
    model = MODELS.build(cfg.model)
    groups = _param_groups_by_name(build_optim_wrapper(model, cfg.optim_wrapper))
    seen = {"norm": 0, "rel": 0, "bn": 0, "bias": 0}
    for name, p in model.named_parameters():
        wd = groups[id(p)]["weight_decay"]
        assert groups[id(p)]["lr"] == 1e-4
        if "norm" in name or "relative_position_bias_table" in name:
            assert wd == 0.0, name
            seen["rel" if "relative" in name else "norm"] += 1
        else:
            assert wd == 0.05, name
            if ".bn." in name:
                seen["bn"] += 1
            elif name.endswith(".bias"):
                seen["bias"] += 1
    assert seen["rel"] == 12  # one table per Swin-T block (2 + 2 + 6 + 2)
    assert seen["bn"] == 3 * 4 * 2  # 3 stages x 4 shared convs x (weight, bias)
    assert seen["norm"] > 0 and seen["bias"] > 0


# ---------------------------------------------------------------------------------------------- layer decay
def _expected_convnext_t_scale(name: str, rate: float = 0.7) -> float:
    """CNX-LD get_num_layer_layer_wise for depths (3, 3, 9, 3), num_layers 6 (so 8 ids, scale rate ** (7 - id)),
    written out for the timm names: stem 0, stage 0 -> 1, stage 1 (with its downsample) -> 2, stage 2's downsample
    -> 3, its blocks 3 + j // 3, stage 3 -> 6, everything else (out_norms, neck, heads) -> 7."""
    if name.startswith("backbone.body.stem_"):
        layer = 0
    elif name.startswith("backbone.body.stages_0."):
        layer = 1
    elif name.startswith("backbone.body.stages_1."):
        layer = 2
    elif name.startswith("backbone.body.stages_2.downsample."):
        layer = 3
    elif name.startswith("backbone.body.stages_2.blocks."):
        layer = 3 + int(name.split(".")[4]) // 3
    elif name.startswith("backbone.body.stages_3."):
        layer = 6
    else:
        layer = 7
    return rate ** (7 - layer)


def test_layer_decay_multipliers_convnext_t():
    cfg = Config.fromfile(os.path.join(CONFIGS, "cascade-mask-rcnn_timm-convnext-t_fpn_1x_coco.py"))
    model = MODELS.build(cfg.model)
    ow = build_optim_wrapper(model, cfg.optim_wrapper)
    groups = _param_groups_by_name(ow)
    named = dict(model.named_parameters())
    assert sum(len(g["params"]) for g in ow.optimizer.param_groups) == len(named)  # each parameter once
    scales = set()
    for name, p in named.items():
        g = groups[id(p)]
        scale = _expected_convnext_t_scale(name)
        assert g["lr_scale"] == pytest.approx(scale, rel=1e-12), name
        assert g["lr"] == pytest.approx(2e-4 * scale, rel=1e-12), name
        no_decay = p.ndim == 1 or name.endswith(".bias")  # CNX-LD: 1-D tensors and biases
        assert g["weight_decay"] == (0.0 if no_decay else 0.05), name
        scales.add(round(scale, 12))
    assert len(scales) == 8  # ids 0..7 all used: 0.7**7 (stem) .. 1 (neck / heads)
    stem_lr = groups[id(named["backbone.body.stem_0.weight"])]["lr"]
    assert stem_lr == pytest.approx(2e-4 * 0.7 ** 7)  # 1.65e-5


class _Detector(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.neck = nn.Conv2d(4, 4, 1)


def _build(det, **paramwise):
    cfg = dict(type="OptimWrapper", constructor="TimmLayerDecayOptimizerConstructor",
               optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.05), paramwise_cfg=paramwise)
    return build_optim_wrapper(det, cfg)


def test_layer_decay_depth_27_and_stage_wise():
    """ConvNeXt-S/B (stage depths 3, 3, 27, 3) with num_layers 12 as CNX-LD's S/B configs: block j of stage 2 gets id
    3 + j // 3 (3..11), stage 3 gets 12, so 14 ids with scale rate ** (13 - id); stage_wise: stem and downsamples 0,
    blocks of stage i i + 1, the rest 13 (CNX-LD get_num_layer_stage_wise with 14 ids)."""
    det = _Detector(TimmBackbone(model_name="convnext_small"))
    groups = _param_groups_by_name(_build(det, decay_rate=0.8, decay_type="layer_wise", num_layers=12))
    named = dict(det.named_parameters())
    for j in (0, 2, 3, 26):
        assert groups[id(named[f"backbone.body.stages_2.blocks.{j}.conv_dw.weight"])]["lr_scale"] == \
            pytest.approx(0.8 ** (13 - (3 + j // 3)))
    assert groups[id(named["backbone.body.stages_3.blocks.2.mlp.fc2.weight"])]["lr_scale"] == pytest.approx(0.8)
    assert groups[id(named["neck.weight"])]["lr_scale"] == 1.0
    groups = _param_groups_by_name(_build(det, decay_rate=0.5, decay_type="stage_wise", num_layers=12))
    assert groups[id(named["backbone.body.stem_0.weight"])]["lr_scale"] == pytest.approx(0.5 ** 13)
    assert groups[id(named["backbone.body.stages_1.downsample.1.weight"])]["lr_scale"] == pytest.approx(0.5 ** 13)
    assert groups[id(named["backbone.body.stages_2.blocks.20.norm.weight"])]["lr_scale"] == pytest.approx(0.5 ** 10)
    assert groups[id(named["backbone.body.stages_3.blocks.0.mlp.fc1.weight"])]["lr_scale"] == pytest.approx(0.5 ** 9)
    assert groups[id(named["neck.weight"])]["lr_scale"] == 1.0


def test_layer_decay_names_map_to_mmpretrain():
    assert mmpretrain_convnext_name("backbone.body.stem_1.bias") == "backbone.downsample_layers.0.1.bias"
    assert mmpretrain_convnext_name("backbone.body.stages_3.downsample.1.weight") == "backbone.downsample_layers.3.1.weight"
    assert mmpretrain_convnext_name("backbone.body.stages_2.blocks.8.gamma") == "backbone.stages.2.8.gamma"
    assert mmpretrain_convnext_name("backbone.out_norms.0.weight") == "backbone.out_norms.0.weight"
    assert mmpretrain_convnext_name("roi_head.bbox_head.0.fc_cls.weight") == "roi_head.bbox_head.0.fc_cls.weight"
    with pytest.raises(ValueError, match="not part of a timm ConvNeXt"):
        mmpretrain_convnext_name("backbone.body.layers_0.blocks.0.attn.qkv.weight")


def test_layer_decay_bad_inputs():
    det = _Detector(TimmBackbone(model_name="convnext_atto"))
    with pytest.raises(ValueError, match="decay_rate must be in"):
        _build(det, decay_rate=1.5, num_layers=6)
    with pytest.raises(ValueError, match="decay_type must be one of"):
        _build(det, decay_rate=0.7, num_layers=6, decay_type="block_wise")
    with pytest.raises(ValueError, match="num_layers must be an int"):
        _build(det, decay_rate=0.7, num_layers="6")
    with pytest.raises(ValueError, match="unknown paramwise_cfg keys"):
        _build(det, decay_rate=0.7, num_layers=6, norm_decay_mult=0.0)
    with pytest.raises(ValueError, match=r"TimmBackbone\(model_name='convnext_\*'\).*'resnet18'"):
        _build(_Detector(TimmBackbone(model_name="resnet18")), decay_rate=0.7, num_layers=6)
    # the reference would give stage-2 blocks 15..26 of a depth-27 model a scale above 1 with num_layers=6
    with pytest.raises(ValueError, match="num_layers=6 is too small for convnext_small"):
        _build(_Detector(TimmBackbone(model_name="convnext_small")), decay_rate=0.7, num_layers=6)


# ---------------------------------------------------------------------------------------------- out norms
def test_out_norms_normalise_each_level():
    bb = TimmBackbone(model_name="convnext_atto", out_strides=(8, 16, 32), out_norm_eps=1e-6).eval()
    assert [n.eps for n in bb.out_norms] == [1e-6] * 3
    assert [n.normalized_shape[0] for n in bb.out_norms] == list(bb.channels)
    with torch.no_grad():
        feats = bb(torch.randn(2, 3, 96, 128) * 3 + 1)
    for f in feats:  # fresh LayerNorm (weight 1, bias 0) over channels: per-pixel mean 0, variance 1
        assert f.mean(1).abs().max() < 1e-4
        assert (f.var(1, unbiased=False) - 1).abs().max() < 1e-2
    with pytest.raises(WeightsError, match="out_norm_eps must be None or a small positive float"):
        TimmBackbone(model_name="convnext_atto", out_norm_eps=-1)
