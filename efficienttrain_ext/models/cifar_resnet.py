"""``resnet10_cifar``: resnet10t's residual stages behind a CIFAR stem (one 3x3 stride-1 convolution, no max-pool).

timm's ResNet stems downsample 4x (a strided convolution and a max-pool), which leaves a 32 px image 8x8 maps in its
first stage and 1x1 in its last; CIFAR ResNets keep the input resolution in the first stage (He et al. 2016, Sec.
4.2). Here the total stride is 8: 32 px -> 32 / 16 / 8 / 4. Width follows ``channels`` (default 64-128-256-512),
the stem's width is ``channels[0]``; other keyword arguments go to timm's ResNet.
"""

from __future__ import annotations

from timm.models import register_model
from timm.models.resnet import BasicBlock, ResNet
from torch import nn

__all__ = ["resnet10_cifar", "resnet18_cifar"]


def _cifar_resnet(layers: list[int], channels=(64, 128, 256, 512), **kwargs) -> ResNet:
    for key in ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):  # timm's factory options:
        kwargs.pop(key, None)  # no pretrained weights exist for this stem
    channels = tuple(channels)
    # a 'deep' stem makes the first stage take stem_width * 2 channels; its convolutions are replaced below
    model = ResNet(BasicBlock, layers, channels=channels, stem_type="deep", stem_width=channels[0] // 2 or 1,
                   avg_down=True, **kwargs)
    model.conv1 = nn.Conv2d(model.conv1[0].in_channels, model.bn1.num_features, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    for info in model.feature_info:  # the stem no longer reduces 4x: stage k reduces 2^(k-1)
        info["reduction"] = max(1, info["reduction"] // 4) if info["module"] != "act1" else 1
    return model


@register_model
def resnet10_cifar(pretrained: bool = False, **kwargs) -> ResNet:
    """One BasicBlock per stage (resnet10t's depth) with the CIFAR stem."""
    return _cifar_resnet([1, 1, 1, 1], **kwargs)


@register_model
def resnet18_cifar(pretrained: bool = False, **kwargs) -> ResNet:
    """The CIFAR ResNet-18 (two BasicBlocks per stage, 11.2 M parameters at full width)."""
    return _cifar_resnet([2, 2, 2, 2], **kwargs)
