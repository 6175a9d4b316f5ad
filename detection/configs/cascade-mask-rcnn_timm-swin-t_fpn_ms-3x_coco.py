# timm Swin-T with the Swin recipe (AdamW 1e-4, wd 0.05, no decay on norms / position tables); detector,
# heads, pipeline, data, weights: the _base_.
_base_ = './_base_/cascade-mask-rcnn_timm_giou-4conv1fc_ms-crop-3x.py'

# drop path 0.2: SwinTransformer/Swin-Transformer-Object-Detection
# configs/swin/cascade_mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py
model = dict(
    backbone=dict(model_name='swin_tiny_patch4_window7_224', out_strides=(4, 8, 16, 32), out_norm_eps=1e-5,
                  model_kwargs=dict(drop_path_rate=0.2)),
    neck=dict(in_channels=[96, 192, 384, 768]))
optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=_base_.swin_adamw,
                     paramwise_cfg=_base_.swin_paramwise_cfg)
