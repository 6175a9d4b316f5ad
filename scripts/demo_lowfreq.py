#!/usr/bin/env python
"""What EfficientTrain's low-frequency cropping keeps, on a real photo: one PNG, side by side.

For each band B (default 32, 64, 96, 128 of a 256x256 resize of scikit-image's astronaut photo):
  1. efficienttrain_ext.lowfreq_crop(x, B): the B x B image the network would see (shown nearest-upscaled);
  2. F.interpolate(bilinear, antialias=True) to B x B, for comparison (nearest-upscaled likewise);
  3. efficienttrain_ext.lowpass(x, B): the same band at full resolution (crop, then exact spectral up-sampling);
  4. the log-magnitude centred spectrum of the photo, with the kept B x B band outlined (the rest dimmed).
The top row holds the photo and its full spectrum. Also printed per band: the fraction of the spectrum's energy
(mean removed) that the band keeps, and the PSNR of the low-passed photo and of the bilinear round trip.

    python scripts/demo_lowfreq.py                                  # -> outputs/lowfreq_demo.png
    python scripts/demo_lowfreq.py --image chelsea --size 512 --bands 64 128 192 256 --out /tmp/cat.png
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

IMAGES = ("astronaut", "chelsea", "coffee", "rocket")


def load_photo(name: str, size: int) -> torch.Tensor:
    """A scikit-image sample photo as float32 [3, size, size] in [0, 1]: centre square crop, antialiased resize."""
    from skimage import data

    img = torch.from_numpy(np.ascontiguousarray(getattr(data, name)())).permute(2, 0, 1).float() / 255.0
    h, w = img.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = img[:, top : top + s, left : left + s]
    if s != size:
        img = F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return img.clamp(0, 1).contiguous()


def centred_log_spectrum(x: torch.Tensor) -> np.ndarray:
    """log(1 + |fft2|) of the luminance, zero frequency in the middle (index n // 2 after fftshift)."""
    lum = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    spec = torch.fft.fftshift(torch.fft.fft2(lum.double()))
    return torch.log1p(spec.abs()).numpy()


def band_rect(n: int, b: int) -> tuple[float, float]:
    """(start, width) in pixel coordinates of the kept frequencies -floor(b/2)..ceil(b/2)-1 after fftshift."""
    return n // 2 - b // 2 - 0.5, float(b)


def energy_fraction(x: torch.Tensor, b: int) -> float:
    """Share of the (mean-removed) spectral energy inside the kept b x b band, over all channels."""
    n = x.shape[-1]
    spec = torch.fft.fftshift(torch.fft.fft2(x.double() - x.double().mean(dim=(-2, -1), keepdim=True)), dim=(-2, -1))
    power = spec.abs() ** 2
    lo = n // 2 - b // 2
    kept = power[..., lo : lo + b, lo : lo + b].sum()
    return float(kept / power.sum())


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def to_display(x: torch.Tensor, size: int | None = None) -> np.ndarray:
    """[3, h, w] -> HxWx3 in [0, 1], nearest-upscaled to size x size when given (shows the real pixel grid)."""
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x[None], size=(size, size), mode="nearest")[0]
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image", choices=IMAGES, default="astronaut", help="scikit-image sample photo (default astronaut)")
    p.add_argument("--size", type=int, default=256, help="resize the photo's centre square to SIZE x SIZE (256)")
    p.add_argument("--bands", type=int, nargs="+", default=[32, 64, 96, 128], help="band sizes B (32 64 96 128)")
    p.add_argument("--out", default=os.path.join("outputs", "lowfreq_demo.png"), help="output PNG path")
    p.add_argument("--dpi", type=int, default=100)
    args = p.parse_args(argv)
    if args.size < 2:
        p.error("--size must be at least 2")
    bad = [b for b in args.bands if not 1 <= b <= args.size]
    if bad:
        p.error(f"--bands must lie in 1..{args.size}, got {bad}")
    return args


def main(argv: Sequence[str] | None = None) -> str:
    args = parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    import efficienttrain_ext as et

    n = args.size
    x = load_photo(args.image, n)
    spec = centred_log_spectrum(x)
    vmin, vmax = np.percentile(spec, 1), spec.max()

    bands = list(args.bands)
    rows = 1 + len(bands)
    fig, axes = plt.subplots(rows, 4, figsize=(4 * 3.6, rows * 3.75), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])

    axes[0, 0].imshow(to_display(x))
    axes[0, 0].set_title(f"input: {args.image} {n}x{n}", fontsize=10)
    axes[0, 3].imshow(spec, cmap="magma", vmin=vmin, vmax=vmax)
    axes[0, 3].set_title("log |FFT|, centred", fontsize=10)
    for ax in (axes[0, 1], axes[0, 2]):
        ax.axis("off")
    note = axes[0, 1].text(
        0.0,
        0.5,
        "Each row keeps the B x B lowest frequencies:\n\n"
        "col 1  lowfreq_crop(x, B): the B x B image\n"
        "       (its pixels shown nearest-upscaled)\n"
        "col 2  bilinear+antialias resize to B x B\n"
        "col 3  lowpass(x, B): the same band at full\n"
        "       size (crop + spectral up-sampling)\n"
        "col 4  spectrum, kept band outlined\n\n"
        "dB: PSNR vs the input after going back to\n"
        "full size (spectral for col 1, bilinear\n"
        "for col 2)\n"
        "energy: share of the spectrum's energy\n"
        "(mean removed) inside the band",
        transform=axes[0, 1].transAxes,
        va="center",
        ha="left",
        fontsize=9.5,
        family="monospace",
    )
    note.set_in_layout(False)  # it spills into the empty panel beside it; keep the grid even

    print(f"{args.image} {n}x{n}:")
    print(f"{'B':>5} {'energy kept':>12} {'PSNR lowfreq->lowpass':>22} {'PSNR bilinear round trip':>25}")
    with torch.no_grad():
        for i, b in enumerate(bands, start=1):
            crop = et.lowfreq_crop(x, b)
            low = et.lowpass(x, b)
            bil = F.interpolate(x[None], size=(b, b), mode="bilinear", antialias=True, align_corners=False)[0]
            bil_up = F.interpolate(bil[None], size=(n, n), mode="bilinear", align_corners=False)[0]
            frac = energy_fraction(x, b)
            p_low, p_bil = psnr(low.clamp(0, 1), x), psnr(bil_up.clamp(0, 1), x)
            print(f"{b:>5} {100 * frac:>11.2f}% {p_low:>19.2f} dB {p_bil:>22.2f} dB")

            axes[i, 0].imshow(to_display(crop, n))
            axes[i, 0].set_title(f"lowfreq_crop {b}x{b} ({p_low:.1f} dB)", fontsize=10)
            axes[i, 0].set_ylabel(f"B = {b}", fontsize=12)
            axes[i, 1].imshow(to_display(bil, n))
            axes[i, 1].set_title(f"bilinear AA {b}x{b} ({p_bil:.1f} dB)", fontsize=10)
            axes[i, 2].imshow(to_display(low))
            axes[i, 2].set_title(f"lowpass(x, {b}) at {n}x{n}", fontsize=10)
            dimmed = spec.copy()
            lo = n // 2 - b // 2
            mask = np.ones_like(dimmed, dtype=bool)
            mask[lo : lo + b, lo : lo + b] = False
            dimmed[mask] = vmin + 0.35 * (dimmed[mask] - vmin)
            axes[i, 3].imshow(dimmed, cmap="magma", vmin=vmin, vmax=vmax)
            start, width = band_rect(n, b)
            axes[i, 3].add_patch(Rectangle((start, start), width, width, fill=False, edgecolor="cyan", linewidth=1.5))
            axes[i, 3].set_title(f"band {b}x{b}: {100 * frac:.1f}% energy", fontsize=10)

    fig.suptitle("EfficientTrain low-frequency cropping (efficienttrain_ext.lowfreq_crop)", fontsize=14)
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    fig.savefig(out, dpi=args.dpi)
    plt.close(fig)
    print(f"wrote {out} ({rows} rows x 4 panels, bands {', '.join(map(str, bands))})")
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
