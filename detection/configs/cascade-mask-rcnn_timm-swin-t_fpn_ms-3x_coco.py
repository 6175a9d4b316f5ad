# timm Swin-T with AdamW; detector, data, weights: the _base_
_base_ = './_base_/cascade-mask-rcnn_timm_ms-3x.py'

model = dict(
    backbone=dict(model_name='swin_tiny_patch4_window7_224', out_strides=(4, 8, 16, 32),
                  model_kwargs=dict(drop_path_rate=0.2)),
    neck=dict(in_channels=[96, 192, 384, 768]))
optim_wrapper = dict(_base_.adamw_optim_wrapper, _delete_=True)  # replaces mmdet's SGD
