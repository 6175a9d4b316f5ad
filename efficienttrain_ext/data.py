"""Datasets and host-side transforms.

Workers only decode, RandomResizedCrop at the final size and flip, and hand over uint8 [C, H, W] tensors; all
size-dependent work (RandAugment, low-frequency crop, normalisation, erasing, mixup) runs on the training
device, so the host cost does not change with the curriculum.

* :class:`FashionMNIST` reads the standard IDX files (gzip or raw), as 3-channel images.
* :class:`SafeImageFolder` is torchvision's ImageFolder that returns None for an unreadable image instead of
  raising; :func:`collate_skip` drops those and reports their paths so the driver can warn and count them.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset, default_collate
from torchvision import transforms as T
from torchvision.datasets import ImageFolder

__all__ = [
    "DataError",
    "FASHION_MNIST_ROOT",
    "FASHION_MNIST_CLASSES",
    "read_idx",
    "FashionMNIST",
    "SafeImageFolder",
    "collate_skip",
    "train_transform",
    "eval_transform",
    "build_datasets",
]

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
# Fashion-MNIST statistics (grey, replicated to 3 channels); ImageNet's for ImageFolder data.
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,) * 3, (0.3530,) * 3
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataError(RuntimeError):
    """A dataset that cannot be used (missing files, no images, malformed IDX)."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (http://yann.lecun.com/exdb/mnist/ format), gzip-compressed or not."""
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic {data[:4]!r})")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    count = int(np.prod(dims)) if dims else 1
    offset = 4 + 4 * ndim
    if len(data) - offset != count * dtype.itemsize:
        raise DataError(f"{path}: header says {dims} items but the file holds {len(data) - offset} bytes")
    return np.frombuffer(data, dtype=dtype, offset=offset, count=count).reshape(dims).astype(dtype.newbyteorder("="))


def _find(root: str, stem: str) -> str:
    for name in (stem + ".gz", stem):
        p = os.path.join(root, name)
        if os.path.exists(p):
            return p
    raise DataError(
        f"Fashion-MNIST file {stem}[.gz] not found under {root}; install the Debian package "
        "'dataset-fashion-mnist' (apt-get install -y dataset-fashion-mnist) or pass --data-root"
    )


class FashionMNIST(Dataset):
    """Fashion-MNIST from its IDX files, as RGB PIL images (grey replicated) through ``transform``."""

    classes = FASHION_MNIST_CLASSES

    def __init__(self, root: str = FASHION_MNIST_ROOT, train: bool = True, transform: Callable | None = None):
        split = "train" if train else "t10k"
        self.images = read_idx(_find(root, f"{split}-images-idx3-ubyte"))
        self.targets = read_idx(_find(root, f"{split}-labels-idx1-ubyte")).astype(np.int64)
        if self.images.ndim != 3 or self.images.shape[0] != self.targets.shape[0]:
            raise DataError(f"{root}: {split} images {self.images.shape} do not match labels {self.targets.shape}")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i], "L").convert("RGB")
        return (self.transform(img) if self.transform else img), int(self.targets[i])


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


def collate_skip(batch: Sequence[tuple]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Collate, dropping unreadable samples; returns (images, targets, paths of dropped images)."""
    good = [(b[0], b[1]) for b in batch if b[0] is not None]
    bad = [b[2] for b in batch if b[0] is None and len(b) > 2]
    if not good:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), bad
    x, y = default_collate(good)
    return x, y, bad


_INTERP = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}


def train_transform(size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip: float = 0.5,
                    interpolation: str = "bicubic") -> Callable:
    ops: list[Any] = [T.RandomResizedCrop(size, scale=tuple(scale), ratio=tuple(ratio),
                                          interpolation=_INTERP[interpolation], antialias=True)]
    if hflip > 0:
        ops.append(T.RandomHorizontalFlip(hflip))
    ops.append(T.PILToTensor())
    return T.Compose(ops)


def eval_transform(size: int, crop_pct: float = 0.875, interpolation: str = "bicubic") -> Callable:
    resize = int(round(size / crop_pct))
    return T.Compose([
        T.Resize(resize, interpolation=_INTERP[interpolation], antialias=True),
        T.CenterCrop(size),
        T.PILToTensor(),
    ])


@dataclass
class Datasets:
    train: Dataset
    val: Dataset
    num_classes: int
    classes: Sequence[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _subset(ds: Dataset, n: int | None) -> Dataset:
    # the first n samples: Fashion-MNIST is stored shuffled, so this keeps the classes balanced
    return ds if n is None or n >= len(ds) else Subset(ds, range(int(n)))


def build_datasets(dataset: str, root: str | None, final_size: int, *, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                   hflip: float = 0.5, interpolation: str = "bicubic", crop_pct: float = 0.875,
                   train_subset: int | None = None, val_subset: int | None = None) -> Datasets:
    """Training and validation sets with the host-side transforms (uint8 output)."""
    tt = train_transform(final_size, scale, ratio, hflip, interpolation)
    et = eval_transform(final_size, crop_pct, interpolation)
    if dataset == "fashion_mnist":
        root = root or FASHION_MNIST_ROOT
        if not os.path.isdir(root):
            raise DataError(
                f"Fashion-MNIST directory {root} not found; install it with 'apt-get install -y "
                "dataset-fashion-mnist' or pass --data-root DIR holding the IDX files"
            )
        train, val = FashionMNIST(root, True, tt), FashionMNIST(root, False, et)
        classes, mean, std = FashionMNIST.classes, FASHION_MNIST_MEAN, FASHION_MNIST_STD
    elif dataset == "imagefolder":
        if not root:
            raise DataError("dataset 'imagefolder' needs --data-root DIR with train/ and val/ subfolders")
        train = SafeImageFolder(os.path.join(root, "train"), tt)
        val = SafeImageFolder(os.path.join(root, "val"), et)
        if train.classes != val.classes:
            raise DataError(f"{root}: train classes {train.classes} differ from val classes {val.classes}")
        classes, mean, std = train.classes, IMAGENET_MEAN, IMAGENET_STD
    else:
        raise DataError(f"unknown dataset {dataset!r}; choose fashion_mnist or imagefolder")
    return Datasets(_subset(train, train_subset), _subset(val, val_subset), len(classes), classes, mean, std)
