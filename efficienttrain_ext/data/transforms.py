"""Host-side transforms: decode-side work only (RandomResizedCrop at the final size, flip), uint8 CHW output.

Everything that depends on the curriculum (RandAugment at m, the crop to B, normalisation, erasing, mixup) runs on
the training device in :class:`~efficienttrain_ext.engine.pipeline.BatchPipeline`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torchvision import transforms as T

__all__ = ["TrainCrop", "TrainTransform", "train_transform", "eval_transform", "INTERPOLATIONS", "WARP_FROM",
           "DEFAULT_CROP_PCT"]

INTERPOLATIONS = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}


@dataclass(frozen=True)
class TrainCrop:
    """The settings of the training crop: loaders that decode and crop themselves (DALI) read them from the
    dataset's transform, so both loaders crop the same way."""

    size: int
    scale: tuple[float, float]
    ratio: tuple[float, float]
    hflip: float
    interpolation: str  # a key of INTERPOLATIONS


class TrainTransform(T.Compose):
    """RandomResizedCrop + flip + PILToTensor, with its settings in ``crop``."""

    def __init__(self, crop: TrainCrop):
        ops: list[Any] = [T.RandomResizedCrop(crop.size, scale=crop.scale, ratio=crop.ratio,
                                              interpolation=INTERPOLATIONS[crop.interpolation], antialias=True)]
        if crop.hflip > 0:
            ops.append(T.RandomHorizontalFlip(crop.hflip))
        ops.append(T.PILToTensor())
        super().__init__(ops)
        self.crop = crop


def train_transform(size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip: float = 0.5,
                    interpolation: str = "bicubic") -> TrainTransform:
    return TrainTransform(TrainCrop(int(size), (float(scale[0]), float(scale[1])),
                                    (float(ratio[0]), float(ratio[1])), float(hflip), interpolation))


# The authors' evaluation (LeapLabTHU/EfficientTrain datasets.py, build_transform with is_train=False): at 384 and
# above the image is resized to size x size (warped, no crop); below, to size / crop_pct (crop_pct 224/256 unless
# given) and centre-cropped.
WARP_FROM = 384
DEFAULT_CROP_PCT = 224 / 256


def eval_transform(size: int, crop_pct: float | None = None, interpolation: str = "bicubic") -> Callable:
    """Validation transform. ``crop_pct=None``: the authors' rule (:data:`WARP_FROM`); a number: resize the shorter
    side to ``size / crop_pct`` and centre-crop ``size`` at any size (timm's ``crop_pct``)."""
    mode = INTERPOLATIONS[interpolation]
    if crop_pct is None and size >= WARP_FROM:
        return T.Compose([T.Resize((size, size), interpolation=mode, antialias=True), T.PILToTensor()])
    resize = int(round(size / (DEFAULT_CROP_PCT if crop_pct is None else crop_pct)))
    return T.Compose([
        T.Resize(resize, interpolation=mode, antialias=True),
        T.CenterCrop(size),
        T.PILToTensor(),
    ])


