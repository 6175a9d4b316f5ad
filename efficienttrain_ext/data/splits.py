"""Seeded, class-stratified train/validation splits (``data.val_split``) for datasets without a validation set, and
class-stratified subsets (``data.train_subset`` / ``val_subset``) of datasets stored class by class."""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..errors import DataError

__all__ = ["stratified_split", "stratified_subset"]


def _class_orders(targets: Sequence[int], seed: int) -> dict[int, list[int]]:
    """Each class's indices in a seeded order: a ``torch.Generator`` seeded with ``seed`` and a per-class offset, so
    the order is the same on every machine and rank."""
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_class.setdefault(int(t), []).append(i)
    orders = {}
    for cls, idx in by_class.items():
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + cls)
        orders[cls] = [idx[p] for p in torch.randperm(len(idx), generator=g).tolist()]
    return orders


def stratified_split(targets: Sequence[int], fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """``(train_indices, val_indices)``: each class contributes ``round(fraction * its count)`` images to the
    validation part (at least one, and at least one left for training, for classes with two or more images),
    the first of its seeded order (:func:`_class_orders`). Both index lists are sorted."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise DataError(f"data.val_split must be a fraction in (0, 1), got {fraction!r}")
    orders = _class_orders(targets, seed)
    train: list[int] = []
    val: list[int] = []
    for cls in sorted(orders):
        order = orders[cls]
        if len(order) < 2:
            raise DataError(f"data.val_split: class {cls} has {len(order)} image(s); a stratified split needs at "
                            "least 2 per class")
        k = min(max(1, int(math.floor(fraction * len(order) + 0.5))), len(order) - 1)
        val += order[:k]
        train += order[k:]
    return sorted(train), sorted(val)


def stratified_subset(targets: Sequence[int], n: int, seed: int = 0) -> list[int]:
    """``n`` indices (sorted) that hold every class in proportion to its count (to within one image): each class's
    images in its seeded order (:func:`_class_orders`), all classes interleaved by their position in that order, of
    which the first ``n`` are taken. Subsets are nested (a larger ``n`` keeps the smaller one's images)."""
    # the j-th image of a class sits at (j + 0.5) / count of the way through it, so the first n are proportional
    keyed = sorted(((j + 0.5) / len(order), cls, i) for cls, order in _class_orders(targets, seed).items()
                   for j, i in enumerate(order))
    return sorted(i for _, _, i in keyed[:int(n)])
