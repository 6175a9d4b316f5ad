# Smoke run: RetinaNet + FPN with a small TimmBackbone on the 3 deepforest aerial photos (177 tree boxes),
# converted by `python detection/tools/deepforest_to_coco.py -o data/deepforest_coco`. CPU, a few minutes.
# Trains and evaluates on the same 3 images: it checks that the stack learns, not generalisation.
_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'
custom_imports = dict(imports=['etrain_mmdet'], allow_failed_imports=False)

data_root = 'data/deepforest_coco/'
ann_file = 'annotations.json'
classes = ('Tree', 'Dead', 'Alive')
img_scale = (384, 384)
max_iters = 300
pretrained = None  # e.g. an etrain run directory trained with resnet18
weights = 'auto'

model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(_delete_=True, type='TimmBackbone', model_name='resnet18', out_strides=(8, 16, 32),
                  checkpoint=pretrained, weights=weights),
    neck=dict(in_channels=[128, 256, 512], out_channels=128, start_level=0, add_extra_convs='on_input',
              num_outs=5),
    bbox_head=dict(num_classes=len(classes), in_channels=128, feat_channels=128, stacked_convs=2,
                   anchor_generator=dict(octave_base_scale=2)),
    test_cfg=dict(score_thr=0.001, nms_pre=1000, max_per_img=200))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
dataset = dict(type='CocoDataset', data_root=data_root, ann_file=ann_file, data_prefix=dict(img='images/'),
               metainfo=dict(classes=classes), filter_cfg=dict(filter_empty_gt=True, min_size=1))
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        sampler=dict(type='InfiniteSampler', shuffle=True), batch_sampler=None,
                        dataset=dict(dataset, pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False, drop_last=False,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      dataset=dict(dataset, pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + ann_file, metric='bbox', format_only=False)
test_evaluator = val_evaluator

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20)]
optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
                     clip_grad=dict(max_norm=10.0))
default_hooks = dict(logger=dict(type='LoggerHook', interval=10),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
