# Generated layout: mmdet's bundled base config + our TimmBackbone. Paths to COCO 2017 are the variables below
# (or `python detection/train.py CONFIG --data-root /path/to/coco/`). Backbone weights: `pretrained` (an
# `etrain train` run dir / checkpoint, an export from detection/tools/export_mmdet.py, or a timm state dict),
# or `--backbone-weights PATH [--ema]` on detection/train.py.
_base_ = 'mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_ms-3x_coco.py'

data_root = 'data/coco/'  # holds annotations/instances_{train,val}2017.json, train2017/, val2017/
train_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root)))  # 3x: RepeatDataset(times=3)
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
custom_imports = dict(imports=['etrain_mmdet'], allow_failed_imports=False)
pretrained = None  # weights for the backbone; None = random init
weights = 'auto'  # etrain checkpoints: 'ema' | 'model' | 'auto' (EMA when present)

model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmBackbone',
        model_name='convnext_tiny',
        out_strides=(4, 8, 16, 32), model_kwargs=dict(drop_path_rate=0.4),
        checkpoint=pretrained,
        weights=weights),
    neck=dict(in_channels=[96, 192, 384, 768]))

# AdamW as in the Swin / ConvNeXt detection recipes (mmdet's swin configs)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'absolute_pos_embed': dict(decay_mult=0.0),
                                    'relative_position_bias_table': dict(decay_mult=0.0)}),
    clip_grad=None)
