# RetinaNet + FPN, 1x: mmdet's bundled R-50 config, backbone replaced by a TimmBackbone.
# The configs inheriting this file (ResNet-50) state only the timm model, its output strides and the FPN inputs;
# they keep mmdet's SGD recipe. Swin / ConvNeXt inherit the _giou-4conv1fc_ms-crop / _ms-crop bases instead.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', './timm.py']

# COCO 2017 (or `python detection/train.py CONFIG --data-root /path/to/coco/`, which rewrites all of these).
data_root = 'data/coco/'  # holds annotations/instances_{train,val}2017.json, train2017/, val2017/
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

model = dict(
    backbone=dict(_delete_=True, type='TimmBackbone', checkpoint=_base_.pretrained, weights=_base_.weights))
