"""RandomResizedCrop and flip for a whole batch on the training device (``data.device_cache``).

Two parts:

* :func:`draw_crop_params`: the crop boxes of torchvision's ``RandomResizedCrop.get_params``, vectorised over
  samples: up to 10 attempts, each drawing the area fraction uniformly in ``scale`` and the aspect ratio
  log-uniformly in ``ratio``, ``w = round(sqrt(area * r))``, ``h = round(sqrt(area / r))``; the first attempt that
  fits is taken, with a uniform position; if none fits, the centre crop clamped to ``ratio``.
* :func:`resized_crop`: crop box ``(i, j, h, w)`` of each image resampled to ``size x size`` (and mirrored where
  asked) as two batched matrix products, ``out = R_h x R_w^T``. Row ``o`` of ``R`` holds the weights that the
  separable resampler of PIL (and of torch's ``antialias=True`` kernels, which copy it) gives output pixel ``o``:
  the triangle (bilinear) or Keys cubic with ``a = -0.5`` (bicubic) filter, stretched by the down-scaling factor
  (anti-aliasing), cut to the crop box and normalised. A mirror is the row order of ``R_w`` reversed. So the
  output is ``torchvision.transforms.v2.functional.resized_crop(..., antialias=True)`` per image, in one batched
  call, to rounding (tested), and so PIL's (the host pipeline's): both run the horizontal pass first and keep
  its result as uint8, as this does.

Images of a batch share their stored size ``H x W``; the boxes differ per sample. Everything runs on the images'
device; the boxes may come from anywhere (they are moved there).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..errors import DataError

__all__ = ["draw_crop_params", "resample_matrix", "resized_crop", "CROP_ATTEMPTS", "FILTERS"]

CROP_ATTEMPTS = 10  # torchvision's and timm's get_params


def _triangle(x: torch.Tensor) -> torch.Tensor:
    return (1.0 - x.abs()).clamp_min(0.0)


def _keys_cubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    # PIL's bicubic_filter (and aten's aa_filter for bicubic): a = -0.5
    x = x.abs()
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


FILTERS = {"bilinear": (_triangle, 1.0), "bicubic": (_keys_cubic, 2.0)}  # name -> (filter, support)


def draw_crop_params(n: int, height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` crop boxes ``(i, j, h, w)`` (int64 ``[n, 4]``, on the CPU) of an ``height x width`` image, drawn as
    torchvision's ``RandomResizedCrop.get_params`` draws one (module docstring); ``generator``: a CPU generator."""
    if height < 1 or width < 1:
        raise DataError(f"cannot crop an image of {height}x{width} pixels")
    lo, hi = float(scale[0]), float(scale[1])
    log_r = torch.tensor([math.log(ratio[0]), math.log(ratio[1])], dtype=torch.float64)
    area = float(height * width)
    u = torch.rand(n, CROP_ATTEMPTS, dtype=torch.float64, generator=generator)
    v = torch.rand(n, CROP_ATTEMPTS, dtype=torch.float64, generator=generator)
    target = area * (lo + (hi - lo) * u)
    aspect = torch.exp(log_r[0] + (log_r[1] - log_r[0]) * v)
    w = torch.round(torch.sqrt(target * aspect)).long()  # round half to even, like Python's round()
    h = torch.round(torch.sqrt(target / aspect)).long()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.int().argmax(dim=1)  # the first attempt that fits (0 when none does: masked below)
    found = ok.any(dim=1)
    rows = torch.arange(n)
    h, w = h[rows, first], w[rows, first]
    # fallback: the whole image, clamped to the ratio range (torchvision's central crop)
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    h = torch.where(found, h, torch.full_like(h, fh))
    w = torch.where(found, w, torch.full_like(w, fw))
    pos = torch.rand(n, 2, dtype=torch.float64, generator=generator)
    i = torch.where(found, (pos[:, 0] * (height - h + 1)).long().clamp_max(height - h), (height - h) // 2)
    j = torch.where(found, (pos[:, 1] * (width - w + 1)).long().clamp_max(width - w), (width - w) // 2)
    return torch.stack([i, j, h, w], dim=1)


def resample_matrix(start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int,
                    interpolation: str = "bicubic") -> torch.Tensor:
    """float32 ``[n, out_size, in_size]``: row ``o`` of sample ``k`` resamples the window ``start[k] ..
    start[k] + length[k] - 1`` of a line of ``in_size`` pixels to output pixel ``o`` of ``out_size`` (PIL's
    ``precompute_coeffs`` with the window as the whole input: taps outside it get no weight)."""
    if interpolation not in FILTERS:
        raise DataError(f"interpolation must be one of {sorted(FILTERS)}, got {interpolation!r}")
    filt, support = FILTERS[interpolation]
    dev = start.device
    start = start.to(torch.float64).view(-1, 1, 1)
    length = length.to(torch.float64).view(-1, 1, 1)
    sc = length / out_size  # input pixels per output pixel
    fscale = sc.clamp_min(1.0)  # down-scaling stretches the filter (anti-aliasing)
    centre = (torch.arange(out_size, device=dev, dtype=torch.float64).view(1, -1, 1) + 0.5) * sc
    x = torch.arange(in_size, device=dev, dtype=torch.float64).view(1, 1, -1) - start  # in the window's frame
    # PIL: taps xmin = max(int(centre - support + 0.5), 0) .. xmax = min(int(centre + support + 0.5), length)
    reach = support * fscale
    lo = torch.trunc(centre - reach + 0.5).clamp_min(0.0)
    hi = torch.minimum(torch.trunc(centre + reach + 0.5), length)
    wgt = filt((x - centre + 0.5) / fscale) * ((x >= lo) & (x < hi))
    total = wgt.sum(dim=-1, keepdim=True)
    wgt = torch.where(total != 0, wgt / torch.where(total != 0, total, torch.ones_like(total)), wgt)
    return wgt.to(torch.float32)


def resized_crop(images: torch.Tensor, boxes: torch.Tensor, size: int, interpolation: str = "bicubic",
                 flip: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 ``[N, C, size, size]``: box ``boxes[k] = (i, j, h, w)`` of ``images[k]`` (uint8 ``[N, C, H, W]``)
    resampled to ``size``, mirrored left-right where ``flip[k]`` is true (module docstring)."""
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise DataError(f"resized_crop takes uint8 images [N, C, H, W], got {got}")
    n, c, height, width = images.shape
    if not isinstance(boxes, torch.Tensor) or boxes.shape != (n, 4) or boxes.is_floating_point() \
            or boxes.is_complex() or boxes.dtype == torch.bool:
        got = f"{boxes.dtype} {tuple(boxes.shape)}" if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise DataError(f"resized_crop needs one integer box (i, j, h, w) per image: {n} images, boxes {got}")
    if boxes.device.type == "cpu":  # the loader draws its boxes on the host: checked there without a device sync
        i, j, h, w = boxes.unbind(1)
        bad = (h < 1) | (w < 1) | (i < 0) | (j < 0) | (i + h > height) | (j + w > width)
        if bad.any():
            k = int(bad.nonzero()[0])
            raise DataError(f"box {k} (i, j, h, w) = {tuple(boxes[k].tolist())} is empty or leaves the "
                            f"{height}x{width} image")
    boxes = boxes.to(images.device)
    if not isinstance(size, int) or size < 1:
        raise DataError(f"output size must be an integer >= 1, got {size!r}")
    if flip is not None and (not isinstance(flip, torch.Tensor) or flip.numel() != n):
        got = tuple(flip.shape) if isinstance(flip, torch.Tensor) else type(flip).__name__
        raise DataError(f"flip needs one flag per image: {n} images, flip {got}")
    rows = resample_matrix(boxes[:, 0], boxes[:, 2], height, size, interpolation)  # [N, S, H]
    cols = resample_matrix(boxes[:, 1], boxes[:, 3], width, size, interpolation)  # [N, S, W]
    if flip is not None:
        flip = flip.to(images.device, torch.bool).view(-1, 1, 1)
        cols = torch.where(flip, cols.flip(1), cols)
    # PIL's order and rounding: the horizontal pass first, its result rounded to 0..255 (PIL keeps it in a uint8
    # image; bicubic overshoots, so the clamp matters), then the vertical pass
    x = (images.to(torch.float32) @ cols.transpose(1, 2).unsqueeze(1)).clamp_(0.0, 255.0).round_()
    x = rows.unsqueeze(1) @ x
    return x.clamp_(0.0, 255.0).round_().to(torch.uint8)
