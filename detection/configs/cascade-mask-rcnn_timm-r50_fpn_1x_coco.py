# timm ResNet-50 (stem + stage 1 frozen, BN eval) with mmdet's SGD; detector, data, weights: the _base_
_base_ = './_base_/cascade-mask-rcnn_timm_1x.py'

model = dict(
    backbone=dict(model_name='resnet50', out_strides=(4, 8, 16, 32), frozen_stages=1, norm_eval=True),
    neck=dict(in_channels=[256, 512, 1024, 2048]))
