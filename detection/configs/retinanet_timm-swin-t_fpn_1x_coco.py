# timm Swin-T, multi-scale + crop, the Swin optimizer settings at lr 2e-4 (issue 20's reading of the EfficientTrain++
# RetinaNet setup); detector, pipeline, data, weights: the _base_.
_base_ = './_base_/retinanet_timm_ms-crop.py'

# strides 8/16/32, P6/P7 from the FPN input (as mmdet's retinanet_swin-t-p4-w7_fpn_1x_coco.py, drop path 0.2 there too)
model = dict(
    backbone=dict(model_name='swin_tiny_patch4_window7_224', out_strides=(8, 16, 32), out_norm_eps=1e-5,
                  model_kwargs=dict(drop_path_rate=0.2)),
    neck=dict(in_channels=[192, 384, 768], start_level=0, add_extra_convs='on_input'))
optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=dict(_base_.swin_adamw, lr=2e-4),
                     paramwise_cfg=_base_.swin_paramwise_cfg)
