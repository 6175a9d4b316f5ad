"""How much of a dataset's image content the low-frequency crop to B removes: the share of the validation images'
spectral energy (mean removed, first channel) outside the band that the crop to each B keeps. Near 0: the crop loses
almost nothing on this data (e.g. images upscaled from a lower resolution); docs/results.md.

    python scripts/band_energy.py -c configs/fashion_mnist_evidence.yaml --sizes 46,54
"""

from __future__ import annotations

import argparse

import torch

from efficienttrain_ext.config import apply_overrides, load_config
from efficienttrain_ext.data import build_datasets


def band(n: int, b: int) -> list[int]:
    """Unshifted FFT indices that the crop to b keeps along a side of n (0..ceil(b/2)-1 and -floor(b/2)..-1)."""
    return list(range(0, (b + 1) // 2)) + list(range(n - b // 2, n))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--sizes", required=True, help="comma-separated B values below the final size")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    c = apply_overrides(load_config(args.config), args.overrides).data
    d = build_datasets(c.dataset, c.root, c.final_size, crop_pct=c.crop_pct, interpolation=c.interpolation,
                       val_subset=c.val_subset, val_split=c.val_split, split_seed=c.split_seed)
    x = torch.stack([d.val[i][0] for i in range(len(d.val))])[:, :1].double() / 255
    power = torch.fft.fft2(x - x.mean(dim=(-2, -1), keepdim=True)).abs() ** 2
    for b in (int(s) for s in args.sizes.split(",")):
        idx = band(c.final_size, b)
        kept = power[..., idx, :][..., idx].sum()
        print(f"final size {c.final_size}, B = {b}: {100 * float(1 - kept / power.sum()):.2f}% of the energy "
              f"outside the kept band ({len(d.val)} validation images)")


if __name__ == "__main__":
    main()
