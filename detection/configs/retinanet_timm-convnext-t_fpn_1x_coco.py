# timm ConvNeXt-T, multi-scale + crop, the ConvNeXt optimizer settings (AdamW 2e-4, layer decay 0.7 over 6 layers, as
# its Cascade config); detector, pipeline, data, weights: the _base_.
_base_ = './_base_/retinanet_timm_ms-crop.py'

# strides 8/16/32, P6/P7 from the FPN input (as mmdet's RetinaNet Swin config)
model = dict(
    backbone=dict(model_name='convnext_tiny', out_strides=(8, 16, 32), out_norm_eps=1e-6,
                  model_kwargs=dict(drop_path_rate=0.4)),
    neck=dict(in_channels=[192, 384, 768], start_level=0, add_extra_convs='on_input'))
optim_wrapper = dict(_delete_=True, type='OptimWrapper', constructor='TimmLayerDecayOptimizerConstructor',
                     optimizer=_base_.convnext_adamw,
                     paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=6))
