"""Seeded, class-stratified train/validation splits (``data.val_split``) for datasets without a validation set, and
class-stratified subsets (``data.train_subset`` / ``val_subset``) of datasets stored class by class."""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..errors import DataError

__all__ = ["stratified_split", "stratified_subset"]


def stratified_split(targets: Sequence[int], fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """``(train_indices, val_indices)``: each class contributes ``round(fraction * its count)`` images to the
    validation part (at least one, and at least one left for training, for classes with two or more images),
    chosen with a ``torch.Generator`` seeded with ``seed`` and a per-class offset, so the split is the same on every
    machine and rank. Both index lists are sorted."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise DataError(f"data.val_split must be a fraction in (0, 1), got {fraction!r}")
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_class.setdefault(int(t), []).append(i)
    train: list[int] = []
    val: list[int] = []
    for cls in sorted(by_class):
        idx = by_class[cls]
        if len(idx) < 2:
            raise DataError(f"data.val_split: class {cls} has {len(idx)} image(s); a stratified split needs at least "
                            "2 per class")
        k = min(max(1, int(math.floor(fraction * len(idx) + 0.5))), len(idx) - 1)
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + cls)
        perm = torch.randperm(len(idx), generator=g).tolist()
        val += [idx[p] for p in perm[:k]]
        train += [idx[p] for p in perm[k:]]
    return sorted(train), sorted(val)


def stratified_subset(targets: Sequence[int], n: int, seed: int = 0) -> list[int]:
    """``n`` indices (sorted) that hold every class in proportion to its count (to within one image): each class's
    images in a seeded order, and all classes interleaved by their position in that order, of which the first ``n``
    are taken. Subsets are nested (a larger ``n`` keeps the smaller one's images) and the same on every machine."""
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_class.setdefault(int(t), []).append(i)
    keyed: list[tuple[float, int, int]] = []
    for cls, idx in by_class.items():
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + cls)
        perm = torch.randperm(len(idx), generator=g).tolist()
        # the j-th image of a class sits at (j + 0.5) / count of the way through it, so the first n are proportional
        keyed += [((j + 0.5) / len(idx), cls, idx[p]) for j, p in enumerate(perm)]
    keyed.sort()
    return sorted(i for _, _, i in keyed[:int(n)])
