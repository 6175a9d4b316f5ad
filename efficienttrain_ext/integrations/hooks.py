"""The curriculum inside any training loop: :class:`CurriculumBatch` turns a loaded batch into the model's input at
this point of the curriculum, :class:`CurriculumLoader` does it to every batch of a loader, so a loop's body stays
as it is.

One batch: images (uint8, or floats whose normalisation is given) -> RandAugment at the schedule's magnitude m ->
float -> normalise -> optional random erasing (at the full size, before the crop, as EfficientTrain does;
``erasing_order="after_crop"`` for after it) -> EfficientTrain's low-frequency crop to the stage's size B ->
optional Mixup/CutMix. It is :class:`~efficienttrain_ext.engine.pipeline.BatchPipeline`, the batch path of ``etrain train``,
run on whatever device the images are on.

Float input: RandAugment's ops are defined on uint8 pixels (bit-identical to timm's PIL ops), so float batches are
brought back to uint8 first. Images that a loader made with ``ToTensor()`` (+ ``Normalize(mean, std)``) came from
uint8 pixels, so undoing the normalisation and rounding recovers those pixels exactly; ``input_mean``/``input_std``
say which normalisation to undo. Anything else (already-augmented floats, random erasing, Mixup) would not be
pixels, and is refused.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn

from ..augment import build_randaugment
from ..curriculum.schedules import Schedule
from ..curriculum.switching import switch_input_size
from ..engine.pipeline import ERASING_ORDERS, BatchPipeline

__all__ = ["CurriculumBatch", "CurriculumLoader", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# how far (in pixel levels) a denormalised float may sit from an integer level, or outside [0, 255]
_PIXEL_TOLERANCE = 0.02


class CurriculumBatch:
    """The device-side batch step of ``schedule`` for a training loop of one's own (module docstring).

    ``mean`` / ``std``: the normalisation of the model's input. ``input_mean`` / ``input_std``: the normalisation
    float batches arrive with (None: floats in [0, 1]; uint8 batches need neither). ``randaugment``: a timm policy
    string (its m is replaced by the schedule's), or None; ``backend``: ``batched`` (one kernel call per batch) or
    ``timm`` (timm's PIL ops per image). ``resize``: ``lowfreq`` (EfficientTrain) or ``bilinear`` / ``bicubic`` /
    ``area``. ``erasing`` / ``mixup``: timm ``RandomErasing`` / ``Mixup`` objects (or None; with Mixup, pass the
    targets and train on the soft targets returned); ``erasing_order``: ``before_crop`` (the full-size image, as
    EfficientTrain) or ``after_crop`` (the B x B image)."""

    def __init__(self, schedule: Schedule, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, *, randaugment: str | None = "rand-m9-mstd0.5-inc1",
                 backend: str = "batched", input_mean: Sequence[float] | None = None,
                 input_std: Sequence[float] | None = None, resize: str = "lowfreq", erasing: Any = None,
                 mixup: Any = None, erasing_order: str = "before_crop"):
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule: expected an efficienttrain_ext.curriculum.Schedule (from curriculum.plan), "
                            f"got {type(schedule).__name__}")
        if (input_mean is None) != (input_std is None):
            raise ValueError("give both input_mean and input_std (the normalisation float batches arrive with), "
                             "or neither (floats in [0, 1])")
        self.schedule = schedule
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.input_mean = None if input_mean is None else tuple(float(v) for v in input_mean)
        self.input_std = None if input_std is None else tuple(float(v) for v in input_std)
        self.randaugment = build_randaugment(randaugment, backend, schedule.final_size, self.mean)
        self.resize = resize
        self.erasing = erasing
        self.mixup = mixup
        if erasing_order not in ERASING_ORDERS:
            raise ValueError(f"erasing_order must be one of {ERASING_ORDERS}, got {erasing_order!r}")
        self.erasing_order = erasing_order
        self._pipelines: dict[torch.device, BatchPipeline] = {}
        self.size: int = schedule.stages[0].size  # of the last batch made (or the first stage's)
        self.magnitude: float = 0.0

    # ------------------------------------------------------------------ where training is
    def progress(self, epoch: int, step: int = 0, steps: int = 1) -> float:
        """Training progress t / T after ``step`` of ``steps`` batches of (0-based) ``epoch``."""
        if steps < 1 or not 0 <= step <= steps:
            raise ValueError(f"step must be in [0, steps] with steps >= 1, got step={step}, steps={steps}")
        return (epoch + step / steps) / self.schedule.epochs

    def size_at(self, epoch: int) -> int:
        """The input size B of (0-based) ``epoch``."""
        return self.schedule.size_at(epoch)

    def magnitude_at(self, epoch: int, step: int = 0, steps: int = 1) -> float:
        """RandAugment's magnitude at ``step`` of ``steps`` batches of ``epoch``."""
        return self.schedule.magnitude_at(self.progress(epoch, step, steps), epoch)

    # ------------------------------------------------------------------ the batch
    def _pipeline(self, device: torch.device) -> BatchPipeline:
        if device not in self._pipelines:
            self._pipelines[device] = BatchPipeline(self.mean, self.std, device, randaugment=self.randaugment,
                                                    resize=self.resize, erasing=self.erasing, mixup=self.mixup,
                                                    erasing_order=self.erasing_order)
        return self._pipelines[device]

    def to_uint8(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` [N, C, H, W] as uint8 pixels (uint8 as is; floats de-normalised and rounded, module docstring)."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"expected an image batch [N, C, H, W], got {got}")
        if images.dtype == torch.uint8:
            return images
        if not images.is_floating_point():
            raise ValueError(f"images must be uint8 or floating point, got {images.dtype}")
        x = images.float()
        if self.input_mean is not None:
            if len(self.input_mean) != x.shape[1]:
                raise ValueError(f"input_mean has {len(self.input_mean)} channels, the images {x.shape[1]}")
            m = torch.tensor(self.input_mean, device=x.device).view(1, -1, 1, 1)
            s = torch.tensor(self.input_std, device=x.device).view(1, -1, 1, 1)
            x = x * s + m
        x = x * 255.0
        levels = x.round()
        off = float((x - levels).abs().amax()) if x.numel() else 0.0
        lo, hi = (float(x.amin()), float(x.amax())) if x.numel() else (0.0, 0.0)
        if off > _PIXEL_TOLERANCE or lo < -_PIXEL_TOLERANCE or hi > 255 + _PIXEL_TOLERANCE:
            told = f"input_mean={self.input_mean}, input_std={self.input_std}" if self.input_mean else \
                "no input normalisation (floats in [0, 1])"
            raise ValueError(
                f"float images are not uint8 pixels under {told}: after undoing it they span [{lo / 255:.3f}, "
                f"{hi / 255:.3f}] and sit up to {off:.2f} levels off the 1/255 grid. Give the normalisation your "
                "loader applies as input_mean/input_std, or load uint8 batches (torchvision "
                "transforms.PILToTensor() instead of ToTensor()/Normalize); batches must not be augmented, erased or "
                "mixed before this step")
        return levels.clamp_(0, 255).to(torch.uint8)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor | None = None, *, epoch: int, step: int = 0,
                 steps: int = 1, generator: torch.Generator | None = None):
        """The model's input for batch ``step`` of ``steps`` of (0-based) ``epoch``: images at the stage's size
        B, augmented at the magnitude of this point of training, normalised. Returns the images, or
        ``(images, targets)`` when targets are given (Mixup makes them soft). ``generator``: a CPU generator for
        RandAugment's draws (else torch's global one)."""
        if self.mixup is not None and targets is None:
            raise ValueError("Mixup/CutMix mixes the targets too: pass them (images, targets = step(images, targets, "
                             "epoch=...)) and train on the soft targets returned")
        size, m = self.size_at(epoch), self.magnitude_at(epoch, step, steps)
        x = self.to_uint8(images)
        y = targets if targets is not None else torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        x, y = self._pipeline(x.device).train(x, y, size, m, generator)
        self.size, self.magnitude = size, m
        return (x, y) if targets is not None else x

    def eval(self, images: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """An evaluation batch: the same input convention, no augmentation, normalised, at ``size`` (default: the
        final size, which the loader gives)."""
        x = self.to_uint8(images)
        return self._pipeline(x.device).eval(x, x.new_zeros(0), size)[0]

    # ------------------------------------------------------------------ the model
    def switch(self, model: nn.Module, epoch: int, optimizer: Any = None, emas: Iterable[nn.Module] = ()) -> list[str]:
        """Bring ``model`` (and ``emas``, e.g. ``ModelEmaV3.module``) to the input size of ``epoch`` in place, the
        optimizer(s) re-pointed at replaced Parameters (:func:`~efficienttrain_ext.curriculum.switch_input_size`).
        Returns the replaced Parameters' names: when any, rebuild a DistributedDataParallel wrapper. Models that
        take any size (ConvNets, ``dynamic_img_size=True`` ViTs) need nothing and return []."""
        target = getattr(model, "module", model) if isinstance(model, nn.parallel.DistributedDataParallel) else model
        if getattr(target, "dynamic_img_size", False) and not hasattr(target, "input_size_rule"):
            return []  # a timm ViT/Swin built with dynamic_img_size=True runs at any size as it is
        return switch_input_size(model, self.size_at(epoch), optimizer, emas)

    def wrap(self, loader: Iterable, epoch: int, device: torch.device | str | None = None,
             generator: torch.Generator | None = None) -> "CurriculumLoader":
        """``loader`` with every batch made by this step for ``epoch`` (see :class:`CurriculumLoader`)."""
        return CurriculumLoader(self, loader, epoch, device, generator)


class CurriculumLoader:
    """Iterates ``loader``'s ``(images, targets, ...)`` batches of ``epoch`` through a :class:`CurriculumBatch`:
    the images (brought to uint8 on the host, then moved to ``device``) come out at the stage's size, augmented
    at the current magnitude and normalised; the targets are moved to ``device`` (and mixed, with Mixup). Its
    length is the loader's, so loops that ask ``len(loader)`` work unchanged."""

    def __init__(self, step: CurriculumBatch, loader: Iterable, epoch: int, device: torch.device | str | None = None,
                 generator: torch.Generator | None = None):
        self.step, self.loader, self.epoch = step, loader, int(epoch)
        self.device = None if device is None else torch.device(device)
        self.generator = generator

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:  # sampler, dataset, batch_size, ... of the wrapped loader
        if name in ("step", "loader", "epoch", "device", "generator"):
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self) -> Iterator:
        try:
            steps = len(self.loader)  # type: ignore[arg-type]
        except TypeError:
            steps = None  # an iterable without a length: progress moves per epoch only
        for i, batch in enumerate(self.loader):
            if not isinstance(batch, (list, tuple)) or len(batch) < 2:
                raise TypeError(f"CurriculumLoader expects (images, targets, ...) batches, got {type(batch).__name__}")
            images, targets, *rest = batch
            images = self.step.to_uint8(images)  # on the host: a quarter of the bytes of a float batch to copy
            if self.device is not None:
                images = images.to(self.device, non_blocking=True)
                targets = targets.to(self.device, non_blocking=True)
            if steps is None:
                x, y = self.step(images, targets, epoch=self.epoch, generator=self.generator)
            else:
                x, y = self.step(images, targets, epoch=self.epoch, step=min(i, steps), steps=max(steps, 1),
                                 generator=self.generator)
            yield (x, y, *rest)

