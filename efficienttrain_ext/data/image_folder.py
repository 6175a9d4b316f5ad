"""Class-folder datasets (torchvision's ImageFolder layout) that skip unreadable images instead of stopping."""

from __future__ import annotations

import os
from typing import Callable, Sequence

import torch
from torch.utils.data import default_collate
from torchvision.datasets import ImageFolder

from ..errors import DataError

__all__ = ["SafeImageFolder", "collate_skip"]


class SafeImageFolder(ImageFolder):
    """ImageFolder whose samples are ``(image, target, path)``, with ``(None, target, path)`` for an image that
    cannot be decoded, so one corrupt file is skipped (and reported) instead of stopping the run."""

    def __init__(self, root: str, transform: Callable | None = None):
        if not os.path.isdir(root):
            raise DataError(f"image folder {root} does not exist")
        try:
            super().__init__(root, transform=transform)
        except (FileNotFoundError, RuntimeError) as e:  # torchvision: no class folders / no valid files
            raise DataError(f"no images found in {root}: {e}") from e

    def __getitem__(self, i: int):
        path, target = self.samples[i]
        try:
            img = self.loader(path)
            img.load()
        except Exception:  # any decoder failure (truncated, not an image, unsupported)
            return None, target, path
        return (self.transform(img) if self.transform else img), target, path

    def encoded(self, i: int) -> bytes:
        """The file's bytes, undecoded (for loaders that decode themselves)."""
        with open(self.samples[i][0], "rb") as f:
            return f.read()

    def sample_name(self, i: int) -> str:
        return self.samples[i][0]


def collate_skip(batch: Sequence[tuple]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Collate, dropping unreadable samples; returns (images, targets, paths of dropped images)."""
    good = [(b[0], b[1]) for b in batch if b[0] is not None]
    bad = [b[2] for b in batch if b[0] is None and len(b) > 2]
    if not good:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), bad
    x, y = default_collate(good)
    return x, y, bad


