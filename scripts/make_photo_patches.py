#!/usr/bin/env python
"""Build ``photo-patches``: a small real-image ImageFolder from the photographs that the scikit-image and
scikit-learn wheels ship (nothing is downloaded).

Each class is one photograph or texture; its images are random square crops of it (side 15-40% of the shorter
image side, random horizontal flip), resized to ``--size`` pixels. Training crops come from the top 70% of the
photo and validation crops from the bottom 30%, so no validation pixel was seen in training. The task is
recognising what a patch shows (brick vs. gravel, a cat's fur vs. a coffee cup, a retina vs. a tissue slide) from
a crop of an unseen region.

    python scripts/make_photo_patches.py --out data/photo_patches            # 10 classes x (200 train + 60 val)

Grey photographs (brick, grass, gravel, moon) are replicated to RGB.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from PIL import Image

CLASSES = ("astronaut", "brick", "chelsea", "china", "coffee", "flower", "grass", "gravel", "hubble_deep_field",
           "immunohistochemistry")


def photo(name: str) -> np.ndarray:
    """The class's photograph as uint8 RGB [H, W, 3]."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image  # scikit-learn ships china.jpg and flower.jpg
        img = load_sample_image(f"{name}.jpg")
    else:
        import skimage.data
        img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def crops(img: np.ndarray, n: int, rows: tuple[float, float], size: int, rng: np.random.Generator):
    h, w, _ = img.shape
    top, bottom = int(rows[0] * h), int(rows[1] * h)
    for _ in range(n):
        side = int(rng.uniform(0.15, 0.40) * min(h, w))
        side = min(side, bottom - top)
        y = int(rng.integers(top, bottom - side + 1))
        x = int(rng.integers(0, w - side + 1))
        patch = Image.fromarray(img[y:y + side, x:x + side]).resize((size, size), Image.BICUBIC)
        if rng.random() < 0.5:
            patch = patch.transpose(Image.FLIP_LEFT_RIGHT)
        yield patch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output root (gets train/<class>/ and val/<class>/)")
    p.add_argument("--train", type=int, default=200, help="training crops per class")
    p.add_argument("--val", type=int, default=60, help="validation crops per class")
    p.add_argument("--size", type=int, default=64, help="side of the saved crops in pixels")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    for name in CLASSES:
        img = photo(name)
        for split, n, rows in (("train", args.train, (0.0, 0.7)), ("val", args.val, (0.7, 1.0))):
            d = os.path.join(args.out, split, name)
            os.makedirs(d, exist_ok=True)
            for i, patch in enumerate(crops(img, n, rows, args.size, rng)):
                patch.save(os.path.join(d, f"{i:04d}.png"))
    print(f"wrote {len(CLASSES)} classes x ({args.train} train + {args.val} val) crops of {args.size}px to {args.out}")


if __name__ == "__main__":
    main()
