"""Circular low-pass and high-pass filters in the centred 2-D spectrum (the paper's Section 4 analysis, Fig. 2-4 and
Table 1): keep the frequencies within (low-pass) or outside (high-pass) a radius of the spectrum's centre.

Unlike :func:`~efficienttrain_ext.ops.lowfreq.lowfreq_crop` these keep the image size; they are plain torch.fft
code (no compiled op).
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["circular_mask", "lowpass_filter", "highpass_filter", "parse_filter"]


def circular_mask(h: int, w: int, radius: float, device=None) -> torch.Tensor:
    """[h, w] bool mask of the unshifted spectrum: True where the centred frequency (u, v) has u^2 + v^2 <= r^2
    (u, v in cycles per image: -h/2 .. h/2 - 1)."""
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    u = torch.fft.fftfreq(h, d=1.0 / h, device=device)  # integer frequencies in fft order
    v = torch.fft.fftfreq(w, d=1.0 / w, device=device)
    return (u[:, None] ** 2 + v[None, :] ** 2) <= float(radius) ** 2


def _filter(x: torch.Tensor, radius: float, keep_inside: bool) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or not x.is_floating_point():
        raise ValueError(f"expected a floating tensor [..., H, W], got {getattr(x, 'dtype', type(x).__name__)} "
                         f"{tuple(getattr(x, 'shape', ()))}")
    h, w = x.shape[-2], x.shape[-1]
    mask = circular_mask(h, w, radius, x.device)
    if not keep_inside:
        mask = ~mask
    spec = torch.fft.fft2(x.to(torch.float64) if x.dtype == torch.float64 else x.float())
    return torch.fft.ifft2(spec * mask).real.to(x.dtype)


def lowpass_filter(x: torch.Tensor, radius: float) -> torch.Tensor:
    """Keep the frequencies within ``radius`` of the spectrum's centre (the mean included)."""
    return _filter(x, radius, keep_inside=True)


def highpass_filter(x: torch.Tensor, radius: float) -> torch.Tensor:
    """Keep the frequencies outside ``radius`` (the mean removed)."""
    return _filter(x, radius, keep_inside=False)


def parse_filter(spec: str | None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``"lowpass:r"`` / ``"highpass:r"`` -> the filter function, None -> None."""
    if spec is None:
        return None
    kind, _, r = spec.partition(":")
    fns = {"lowpass": lowpass_filter, "highpass": highpass_filter}
    if kind not in fns or not r.isdigit():
        raise ValueError(f"filter must look like lowpass:R or highpass:R, got {spec!r}")
    radius = int(r)
    fn = fns[kind]
    return lambda x: fn(x, radius)
