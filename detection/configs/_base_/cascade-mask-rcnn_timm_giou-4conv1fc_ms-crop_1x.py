# Cascade Mask R-CNN + FPN, 1x, with the Swin / ConvNeXt recipe (swin_convnext_recipe.py): 4conv1fc SyncBN heads with
# GIoU loss, multi-scale 480-800 training with the random-crop branch. Schedule as mmdet's 1x (12 epochs, lr x0.1 at
# 8 and 11, 500-iter linear warm-up), which is the Swin repo's 1x config (lr_config step=[8, 11], max_epochs=12).
# The configs inheriting this file state the timm model, its output strides, the FPN inputs and the optimizer.
_base_ = ['./cascade-mask-rcnn_timm_1x.py', './swin_convnext_recipe.py']

model = dict(roi_head=dict(bbox_head=_base_.giou_4conv1fc_bbox_heads))
train_dataloader = dict(dataset=dict(pipeline=_base_.ms_crop_instance_pipeline))
