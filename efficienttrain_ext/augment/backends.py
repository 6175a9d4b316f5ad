"""Batch RandAugment behind one interface, by backend name (``aug.randaugment_impl``).

Every backend has a settable ``magnitude`` and ``__call__(uint8 [N, C, H, W], generator=None)``, returning the
batch on its device: ``batched`` is :class:`~efficienttrain_ext.augment.policy.RandAugment` (per-sample ops in one
kernel call on the training device), ``timm`` is timm's per-image PIL transform
(:class:`~efficienttrain_ext.augment.timm_backend.TimmBatchRandAugment`).
"""

from __future__ import annotations

from typing import Any

from .policy import RandAugment
from .timm_backend import TimmBatchRandAugment

__all__ = ["BACKENDS", "randaugment_hparams", "build_randaugment"]

BACKENDS = {"batched": RandAugment, "timm": TimmBatchRandAugment}


def randaugment_hparams(img_size: int, mean: tuple[float, ...]) -> dict[str, Any]:
    """timm's hparams for an image size: translation relative to the size, fill with the dataset mean."""
    return {"translate_const": int(img_size * 0.45), "img_mean": tuple(min(255, round(255 * x)) for x in mean)}


def build_randaugment(policy: str | None, backend: str, img_size: int, mean: tuple[float, ...]):
    """The RandAugment of ``backend`` for ``policy`` at the final image size, or None when ``policy`` is empty."""
    if not policy:
        return None
    if backend not in BACKENDS:
        raise ValueError(f"RandAugment backend must be one of {sorted(BACKENDS)}, got {backend!r}")
    return BACKENDS[backend](policy, randaugment_hparams(img_size, mean))
