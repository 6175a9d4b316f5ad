"""The device-side batch path, one object for training and evaluation.

Training: uint8 batch -> RandAugment at m -> float in [0, 1] -> optional fixed filter (``curriculum.filter``) ->
normalise -> random erasing at the full size -> to size B (the low-frequency crop, or antialiased down-sampling
for the Table 13b ablation) -> Mixup/CutMix. Erasing before the crop is EfficientTrain's order (its data loader
erases the full-size image, the crop runs on the GPU afterwards: LeapLabTHU/EfficientTrain engine.py,
datasets.py); ``erasing_order="after_crop"`` erases the B x B image instead (EfficientTrain++'s released code,
whose Lanczos resize runs before timm's erasing: datasets_buffer.py). Normalising before the crop changes nothing
else: every resize here is linear and keeps constant images, so it commutes with the per-channel affine map.
Evaluation: float -> (filter) -> to size -> normalise.

Everything here runs on the training device after the host-to-device copy, so the data loader's work (decode,
RandomResizedCrop at the final size, flip) does not depend on the curriculum.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.data.random_erasing import RandomErasing

from ..augment import build_randaugment
from ..config import Config
from ..ops.lowfreq import lowfreq_crop
from ..ops.spectral import parse_filter

__all__ = ["BatchPipeline", "resize_to", "ERASING_ORDERS"]

ERASING_ORDERS = ("before_crop", "after_crop")


def resize_to(x: torch.Tensor, size: int, method: str = "lowfreq") -> torch.Tensor:
    """``x`` [N, C, H, W] float at ``size`` x ``size``: EfficientTrain's low-frequency crop, or antialiased
    ``bilinear`` / ``bicubic`` / ``area`` down-sampling (the paper's Table 13b comparison)."""
    if size == x.shape[-1] and size == x.shape[-2]:
        return x
    if method == "lowfreq":
        return lowfreq_crop(x, size)
    if method == "area":
        return F.interpolate(x, size=(size, size), mode="area")
    if method in ("bilinear", "bicubic"):
        return F.interpolate(x, size=(size, size), mode=method, antialias=True, align_corners=False)
    raise ValueError(f"resize method must be lowfreq, bilinear, bicubic or area, got {method!r}")


class BatchPipeline:
    """The device-side path of one batch (module docstring). ``randaugment``: a batch RandAugment with a settable
    ``magnitude`` (or None); ``erasing`` / ``mixup``: timm's RandomErasing / Mixup (or None); ``resize``: how B is
    reached; ``image_filter``: a function applied to every float image at full size (or None); ``erasing_order``:
    erase the full-size image before it is brought to B (``before_crop``) or the B x B image (``after_crop``)."""

    def __init__(self, mean, std, device: torch.device | str, *, randaugment=None, resize: str = "lowfreq",
                 image_filter: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 erasing: RandomErasing | None = None, mixup: Mixup | None = None,
                 erasing_order: str = "before_crop"):
        if erasing_order not in ERASING_ORDERS:
            raise ValueError(f"erasing_order must be one of {ERASING_ORDERS}, got {erasing_order!r}")
        self.erasing_order = erasing_order
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1)
        self.randaugment = randaugment
        self.resize = resize
        self.image_filter = image_filter
        self.erasing = erasing
        self.mixup = mixup
        self._train_float = self._to_float  # the training batches' float/crop/normalise path (may be compiled)

    @classmethod
    def from_config(cls, cfg: Config, mean, std, num_classes: int, device: torch.device) -> "BatchPipeline":
        a = cfg.aug
        mixup = None
        if a.mixup > 0 or a.cutmix > 0:
            mixup = Mixup(mixup_alpha=a.mixup, cutmix_alpha=a.cutmix, prob=a.mixup_prob,
                          switch_prob=a.mixup_switch_prob, label_smoothing=a.smoothing, num_classes=num_classes)
        erasing = RandomErasing(a.reprob, mode=a.remode, device=str(device)) if a.reprob > 0 else None
        return cls(mean, std, device,
                   randaugment=build_randaugment(a.randaugment, a.randaugment_impl, cfg.data.final_size, mean),
                   resize=cfg.curriculum.resize, image_filter=parse_filter(cfg.curriculum.filter),
                   erasing=erasing, mixup=mixup, erasing_order=a.erasing_order)

    @property
    def soft_targets(self) -> bool:
        """Whether training targets are soft (Mixup/CutMix with label smoothing): the loss must take them."""
        return self.mixup is not None

    def _to_float(self, x: torch.Tensor, size: int | None) -> torch.Tensor:
        x = x.float().div_(255.0)
        if self.image_filter is not None:
            x = self.image_filter(x)
        if size is not None and size < x.shape[-1]:
            x = resize_to(x, size, self.resize)
        return (x - self.mean) / self.std

    def compile_float_path(self, compile_fn: Callable[[Callable], Callable]) -> None:
        """Compile the training batches' float / filter / crop / normalise path with ``compile_fn`` (e.g. a static-
        shape ``torch.compile``: one graph per stage size). Evaluation keeps the eager path."""
        self._train_float = compile_fn(self._to_float)

    def train(self, x: torch.Tensor, y: torch.Tensor, size: int, magnitude: float,
              generator: torch.Generator | None = None):
        """A training batch at input size ``size`` and RandAugment magnitude ``magnitude`` (RandAugment's draws from
        ``generator``, a CPU generator, when given; else torch's global one): :meth:`augment`, then :meth:`mix`."""
        return self.mix(*self.augment(x, y, size, magnitude, generator))

    def augment(self, x: torch.Tensor, y: torch.Tensor, size: int, magnitude: float,
                generator: torch.Generator | None = None):
        """Everything of :meth:`train` up to Mixup/CutMix: what a replay buffer of augmented images keeps."""
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        if self.randaugment is not None:
            self.randaugment.magnitude = magnitude
            x = self.randaugment(x, generator)
        if self.erasing is not None and self.erasing_order == "before_crop":
            x = self.erasing(self._train_float(x, None))
            if size < x.shape[-1]:
                x = resize_to(x, size, self.resize)
        else:
            x = self._train_float(x, size)
            if self.erasing is not None:
                x = self.erasing(x)
        return x, y

    def mix(self, x: torch.Tensor, y: torch.Tensor):
        """Mixup/CutMix of an augmented batch (hard labels in, soft targets out when on)."""
        if self.mixup is not None:
            if x.shape[0] % 2:  # timm's Mixup pairs images: drop one when skipped images made the batch odd
                x, y = x[:-1], y[:-1]
            x, y = self.mixup(x, y)
        return x, y

    def eval(self, x: torch.Tensor, y: torch.Tensor, size: int | None = None):
        """An evaluation batch (no augmentation), brought to ``size`` the same way as in training."""
        return self._to_float(x.to(self.device, non_blocking=True), size), y.to(self.device, non_blocking=True)
