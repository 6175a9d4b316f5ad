# RetinaNet + FPN, 1x, multi-scale 480-800 training with the random-crop branch (swin_convnext_recipe.py), as the
# EfficientTrain++ COCO setup (issue 20; its RetinaNet Swin-T baseline, 41.7 box AP, is well above mmdet's
# single-scale retinanet_swin-t-p4-w7_fpn_1x_coco, 37.7). The configs state the backbone, FPN inputs and optimizer.
_base_ = ['./retinanet_timm.py', './swin_convnext_recipe.py']

train_dataloader = dict(dataset=dict(pipeline=_base_.ms_crop_bbox_pipeline))
