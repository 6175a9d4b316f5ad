"""Unreadable training images are replaced, not skipped: every batch keeps its size.

A rank that dropped images from a batch could be left with too few to train on (BatchNorm needs two) while the
other ranks train: skipping the step would need every rank to agree, a collective at every step. Instead the
loader replaces an unreadable sample with the next readable one of the dataset (index ``i + 1``, ``i + 2``, ...
modulo its length: deterministic, the same on every rank and in a resumed run; in a class-sorted folder usually
an image of the same class), reports the paths it could not read with the batch, and the trainer reports the union
over ranks at the epoch end. Validation still skips (each image is counted once).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.utils.data import Dataset, default_collate

from ..errors import DataError

__all__ = ["ReplaceUnreadable", "collate_replaced"]


class ReplaceUnreadable(Dataset):
    """``dataset`` (samples ``(image or None, target[, path])``) with each unreadable sample replaced by the next
    readable one; samples are ``(image, target, paths that could not be read)``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        n, bad = len(self.dataset), []
        for k in range(n):
            j = (int(i) + k) % n
            img, target, *rest = self.dataset[j]
            if img is not None:
                return img, target, tuple(bad)
            bad.append(str(rest[0]) if rest else f"sample {j}")
        raise DataError(f"none of the {n} training images can be read (the first failures: {bad[:3]})")


def collate_replaced(batch: Sequence[tuple]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Collate :class:`ReplaceUnreadable` samples: (images, targets, paths of the images replaced)."""
    x, y = default_collate([(b[0], b[1]) for b in batch])
    return x, y, [p for b in batch for p in b[2]]
