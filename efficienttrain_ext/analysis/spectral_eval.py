"""Accuracy on low-pass and high-pass filtered validation images (the paper's Fig. 2-4 and Table 1).

Each validation image at the final size (float in [0, 1]) goes through a circular filter in the centred spectrum
(:mod:`efficienttrain_ext.ops.spectral`: keep the frequencies within / outside radius r, in cycles per image), is
normalised like a training input and classified; the filtered images are not clipped to [0, 1]. One pass over the
data: every filter is applied to each loaded batch. For orientation: EfficientTrain's crop to B keeps the square of
half-width B/2, so ``lowpass:r`` is comparable to B = 2r (a circle inside that square).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from ..engine.pipeline import BatchPipeline
from ..ops.spectral import parse_filter

__all__ = ["FilterSpec", "filter_specs", "filtered_accuracy"]


@dataclass(frozen=True)
class FilterSpec:
    kind: str  # "none", "lowpass" or "highpass"
    radius: int | None = None

    @property
    def name(self) -> str:
        return "none" if self.kind == "none" else f"{self.kind}:{self.radius}"


def filter_specs(lowpass: Sequence[int] = (), highpass: Sequence[int] = ()) -> list[FilterSpec]:
    """The unfiltered reference, then the low-pass and the high-pass radii (each > 0, ascending)."""
    for r in list(lowpass) + list(highpass):
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ValueError(f"filter radii must be integers >= 1, got {r!r}")
    return [FilterSpec("none")] + [FilterSpec("lowpass", r) for r in sorted(set(lowpass))] + \
        [FilterSpec("highpass", r) for r in sorted(set(highpass))]


@torch.no_grad()
def filtered_accuracy(models: Sequence[nn.Module], batches: Iterable, specs: Sequence[FilterSpec], mean, std,
                      device: torch.device, progress: bool = True) -> list[dict[str, float]]:
    """Top-1 accuracy (%) of each model under each filter: one dict ``{filter name: accuracy}`` per model.
    ``batches`` yields ``(uint8 images [N, C, H, W], targets, ...)`` at the final size (the validation loader)."""
    pipes = [BatchPipeline(mean, std, device, image_filter=parse_filter(None if s.kind == "none" else s.name))
             for s in specs]
    correct = torch.zeros(len(models), len(specs), dtype=torch.float64)
    seen = 0
    for batch in tqdm(batches, desc="filtered evaluation", disable=not progress, leave=False):
        x, y = batch[0], batch[1]
        if x.shape[0] == 0:
            continue
        for j, pipe in enumerate(pipes):
            xf, yf = pipe.eval(x, y)
            for i, m in enumerate(models):
                out = m(xf)
                out = out[0] if isinstance(out, (tuple, list)) else out
                correct[i, j] += (out.argmax(dim=1) == yf).sum().item()
        seen += x.shape[0]
    if seen == 0:
        raise ValueError("the validation set is empty")
    return [{s.name: float(100.0 * correct[i, j] / seen) for j, s in enumerate(specs)} for i in range(len(models))]
