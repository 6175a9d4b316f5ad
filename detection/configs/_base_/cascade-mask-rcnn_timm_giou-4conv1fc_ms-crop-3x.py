# Cascade Mask R-CNN + FPN, 3x, with the Swin / ConvNeXt recipe (swin_convnext_recipe.py): 4conv1fc SyncBN heads with
# GIoU loss, multi-scale 480-800 training with the random-crop branch. Schedule as mmdet's ms-3x: 12 epochs over
# RepeatDataset(times=3), lr x0.1 at 9 and 11 = 36 epochs with steps at 27 and 33, the Swin / ConvNeXt 3x schedule.
# The configs inheriting this file state the timm model, its output strides, the FPN inputs and the optimizer.
_base_ = ['./cascade-mask-rcnn_timm_ms-3x.py', './swin_convnext_recipe.py']

model = dict(roi_head=dict(bbox_head=_base_.giou_4conv1fc_bbox_heads))
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=_base_.ms_crop_instance_pipeline)))
