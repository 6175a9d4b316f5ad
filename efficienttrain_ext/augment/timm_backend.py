"""timm's per-image PIL RandAugment behind the batch interface of :mod:`.backends` (``aug.randaugment_impl: timm``).

The trainer sets ``aug.magnitude = m(t)`` and calls ``aug(batch_uint8)`` every step; this backend moves the batch
to the CPU, runs timm's transform image by image and moves the result back.
"""

from __future__ import annotations

import random
from typing import Any, Mapping

import numpy as np
import torch
from PIL import Image
from timm.data.auto_augment import rand_augment_transform

__all__ = ["TimmBatchRandAugment"]


def _at_least_one_bit(posterize):
    # timm's PosterizeIncreasing maps magnitude 10 to 0 bits, which Pillow >= 10 rejects; keep 1 bit instead
    def fn(img, bits_to_keep, **kwargs):
        return posterize(img, max(1, bits_to_keep), **kwargs)

    return fn


class TimmBatchRandAugment:
    """RandAugment over a uint8 batch, image by image with timm's ``rand_augment_transform``.

    ``magnitude`` overrides the policy string's m on every call (so m can follow a per-step schedule); the
    policy's other settings (n, mstd, inc, mmax) are kept. The randomness comes from Python's ``random`` and
    NumPy's global generators as in timm; with ``generator`` given, they are seeded from it for the call and
    restored afterwards, so the call is reproducible and the global streams are untouched.
    """

    def __init__(self, policy: str = "rand-m9-mstd0.5-inc1", hparams: Mapping[str, Any] | None = None):
        self.policy = policy
        self._ra = rand_augment_transform(policy, dict(hparams or {}))
        for op in self._ra.ops:
            if "Posterize" in op.name:
                op.aug_fn = _at_least_one_bit(op.aug_fn)
        self.magnitude = float(self._ra.ops[0].magnitude) if self._ra.ops else 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(policy={self.policy!r}, magnitude={self.magnitude:g})"

    def _apply(self, batch: torch.Tensor) -> torch.Tensor:
        for op in self._ra.ops:
            op.magnitude = float(self.magnitude)
        cpu = batch.detach().to("cpu", copy=False).permute(0, 2, 3, 1).contiguous().numpy()
        out = np.empty_like(cpu)
        channels = cpu.shape[-1]
        for i, img in enumerate(cpu):
            pil = Image.fromarray(img[..., 0] if channels == 1 else img, "L" if channels == 1 else "RGB")
            res = np.asarray(self._ra(pil))
            out[i] = res[..., None] if channels == 1 else res
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(batch.device, non_blocking=True)

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if batch.dtype != torch.uint8 or batch.dim() != 4 or batch.shape[1] not in (1, 3):
            raise ValueError(f"expected a uint8 batch [N, 1|3, H, W], got {batch.dtype} {tuple(batch.shape)}")
        if generator is None:
            return self._apply(batch)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            random.seed(seed)
            np.random.seed(seed)
            return self._apply(batch)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
