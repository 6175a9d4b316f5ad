# The COCO recipe of the Swin and ConvNeXt detection repos, which EfficientTrain++ follows (its COCO table: RetinaNet
# 1x with Swin-T, Cascade Mask R-CNN 1x with Swin-T/S/B). Helper values only: the detector bases and configs take
# them as `_base_.NAME` (mmengine forbids one key in two sibling bases, so no name here is an mmdet config key).
# Sources (values identical in each):
#   SwinTransformer/Swin-Transformer-Object-Detection configs/swin/
#       cascade_mask_rcnn_swin_{tiny,small,base}_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_{1x,3x}_coco.py
#   facebookresearch/ConvNeXt object_detection/configs/convnext/
#       cascade_mask_rcnn_convnext_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco_in1k.py
#   and their mmdet 3.x ports, open-mmlab/mmdetection configs/convnext/
#       cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py and
#       configs/swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py (the two-branch AutoAugment policy of the mmdet 2.x
#       configs written with mmcv 2 transforms: RandomChoice of two RandomChoiceResize chains).

# Cascade R-CNN box heads: 4 shared convs + 1 fc with SyncBN, boxes decoded before a GIoU loss (weight 10), one head per
# stage with the cascade's target stds.
giou_4conv1fc_bbox_heads = [
    dict(type='ConvFCBBoxHead', num_shared_convs=4, num_shared_fcs=1, in_channels=256, conv_out_channels=256,
         fc_out_channels=1024, roi_feat_size=7, num_classes=80,
         bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=stds),
         reg_class_agnostic=False, reg_decoded_bbox=True, norm_cfg=dict(type='SyncBN', requires_grad=True),
         loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
         loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
    for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])]

# Multi-scale training with the random-crop branch ("augmentation strategy originates from DETR / Sparse RCNN"):
# either the short side in 480..800 (step 32, long side <= 1333), or short side 400/500/600, a random crop of
# 384..600 px, then the short side in 480..800.
ms_crop_resize = dict(
    type='RandomChoice',
    transforms=[
        [dict(type='RandomChoiceResize', scales=[(s, 1333) for s in range(480, 801, 32)], keep_ratio=True)],
        [dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)], keep_ratio=True),
         dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
         dict(type='RandomChoiceResize', scales=[(s, 1333) for s in range(480, 801, 32)], keep_ratio=True)],
    ])
ms_crop_instance_pipeline = [  # Cascade Mask R-CNN (boxes + masks)
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    ms_crop_resize,
    dict(type='PackDetInputs'),
]
ms_crop_bbox_pipeline = [  # RetinaNet (boxes only)
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    ms_crop_resize,
    dict(type='PackDetInputs'),
]

# Swin: AdamW 1e-4, wd 0.05, no weight decay on the position tables and on every parameter whose name contains 'norm'
# (the backbone's LayerNorms and TimmBackbone's out_norms; the heads' SyncBN layers are named 'bn' and keep it).
swin_adamw = dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05)
swin_paramwise_cfg = dict(custom_keys={'absolute_pos_embed': dict(decay_mult=0.),
                                       'relative_position_bias_table': dict(decay_mult=0.),
                                       'norm': dict(decay_mult=0.)})
# ConvNeXt: AdamW 2e-4, wd 0.05, layer-wise lr decay (etrain_mmdet.layer_decay; rate / num_layers per model in the
# configs: 0.7 / 6 for ConvNeXt-T).
convnext_adamw = dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05)
