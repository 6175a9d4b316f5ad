# timm Swin-T with AdamW; detector, data, weights: the _base_
_base_ = './_base_/retinanet_timm.py'

# strides 8/16/32, P6/P7 from the FPN input (as mmdet's RetinaNet Swin config)
model = dict(
    backbone=dict(model_name='swin_tiny_patch4_window7_224', out_strides=(8, 16, 32),
                  model_kwargs=dict(drop_path_rate=0.2)),
    neck=dict(in_channels=[192, 384, 768], start_level=0, add_extra_convs='on_input'))
optim_wrapper = dict(_base_.adamw_optim_wrapper, _delete_=True)  # replaces mmdet's SGD
