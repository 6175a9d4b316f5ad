"""Host-side transforms: decode-side work only (RandomResizedCrop at the final size, flip), uint8 CHW output.

Everything that depends on the curriculum (RandAugment at m, the crop to B, normalisation, erasing, mixup) runs on
the training device in :class:`~efficienttrain_ext.engine.pipeline.BatchPipeline`.
"""

from __future__ import annotations

from typing import Any, Callable

from torchvision import transforms as T

__all__ = ["train_transform", "eval_transform", "INTERPOLATIONS"]

INTERPOLATIONS = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}


def train_transform(size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip: float = 0.5,
                    interpolation: str = "bicubic") -> Callable:
    ops: list[Any] = [T.RandomResizedCrop(size, scale=tuple(scale), ratio=tuple(ratio),
                                          interpolation=INTERPOLATIONS[interpolation], antialias=True)]
    if hflip > 0:
        ops.append(T.RandomHorizontalFlip(hflip))
    ops.append(T.PILToTensor())
    return T.Compose(ops)


def eval_transform(size: int, crop_pct: float = 0.875, interpolation: str = "bicubic") -> Callable:
    resize = int(round(size / crop_pct))
    return T.Compose([
        T.Resize(resize, interpolation=INTERPOLATIONS[interpolation], antialias=True),
        T.CenterCrop(size),
        T.PILToTensor(),
    ])


