"""Build a JPEG ImageFolder of real photos at ImageNet-like sizes (for scripts/bench_loader.py and the tests).

The photos ship inside installed wheels, so this works offline: scikit-image's ``skimage.data`` (astronaut,
chelsea, coffee, rocket, hubble_deep_field, immunohistochemistry, retina, motorcycle) and, when scikit-learn is
installed, its two sample JPEGs (china, flower). Each photo is one class. Every image is a seeded random crop of
its photo (30-100% of the area, aspect 3:4 to 4:3) resized (Lanczos) to one of ImageNet's common sizes (500x375,
375x500, 500x333, 333x500, 500x500, 400x300) and saved as a JPEG of quality 90, so the decoder and the crop see
the pixel counts and compression of a typical ImageNet file (~110 kB at 500x375).

    python scripts/make_photo_folder.py /tmp/photos --per-class 64 --val-per-class 8
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

import numpy as np
from PIL import Image

IMAGENET_SIZES = ((500, 375), (375, 500), (500, 333), (333, 500), (500, 500), (400, 300))  # (width, height)


def photos() -> dict[str, np.ndarray]:
    """Name -> RGB uint8 photo, from the wheels installed here."""
    import skimage.data as sd

    out = {name: getattr(sd, name)() for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                                                  "immunohistochemistry", "retina")}
    out["motorcycle"] = sd.stereo_motorcycle()[0]
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        return out
    sample = load_sample_images()
    for name, img in zip(sample.filenames, sample.images):
        out[os.path.splitext(os.path.basename(name))[0]] = img
    return out


def _crop(photo: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    h, w = photo.shape[:2]
    for _ in range(20):
        area = rng.uniform(0.3, 1.0) * h * w
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = int(round(np.sqrt(area * ratio))), int(round(np.sqrt(area / ratio)))
        if cw <= w and ch <= h:
            break
    else:
        cw, ch = w, h
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return Image.fromarray(photo[y:y + ch, x:x + cw]).resize(size, Image.LANCZOS)


def build_photo_folder(root: str, per_class: int = 32, val_per_class: int = 4,
                       sizes: Sequence[tuple[int, int]] = IMAGENET_SIZES, quality: int = 90, seed: int = 0,
                       classes: Sequence[str] | None = None) -> str:
    """Write ``root/{train,val}/<photo>/<i>.jpg``; ``classes`` picks some of :func:`photos` (default: all)."""
    rng = np.random.default_rng(seed)
    source = photos()
    names = list(classes) if classes is not None else sorted(source)
    for split, n in (("train", per_class), ("val", val_per_class)):
        for name in names:
            d = os.path.join(root, split, name)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                size = tuple(sizes[int(rng.integers(len(sizes)))])
                _crop(source[name], size, rng).save(os.path.join(d, f"{i:05d}.jpg"), "JPEG", quality=quality)
    return root


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="output ImageFolder root")
    p.add_argument("--per-class", type=int, default=32, help="training images per class (default 32)")
    p.add_argument("--val-per-class", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    build_photo_folder(a.root, a.per_class, a.val_per_class, seed=a.seed)
    n = sum(len(files) for _, _, files in os.walk(a.root))
    print(f"wrote {n} JPEGs under {a.root}")


if __name__ == "__main__":
    main()
