# timm ConvNeXt-T with the ConvNeXt recipe (AdamW 2e-4, wd 0.05, layer-wise lr decay 0.7 over 6 layers, drop path
# 0.4: facebookresearch/ConvNeXt object_detection/configs/convnext/
# cascade_mask_rcnn_convnext_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco_in1k.py);
# detector, heads, pipeline, data, weights: the _base_.
_base_ = './_base_/cascade-mask-rcnn_timm_giou-4conv1fc_ms-crop_1x.py'

model = dict(
    backbone=dict(model_name='convnext_tiny', out_strides=(4, 8, 16, 32), out_norm_eps=1e-6,
                  model_kwargs=dict(drop_path_rate=0.4)),
    neck=dict(in_channels=[96, 192, 384, 768]))
optim_wrapper = dict(_delete_=True, type='OptimWrapper', constructor='TimmLayerDecayOptimizerConstructor',
                     optimizer=_base_.convnext_adamw,
                     paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=6))
