"""Fashion-MNIST from its standard IDX files (the Debian package ``dataset-fashion-mnist`` installs them)."""

from __future__ import annotations

import gzip
import os
import struct
from typing import Callable

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError

__all__ = ["FASHION_MNIST_ROOT", "FASHION_MNIST_CLASSES", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "read_idx",
           "FashionMNIST", "is_fashion_mnist_dir"]

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
# Fashion-MNIST statistics (grey, replicated to 3 channels)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,) * 3, (0.3530,) * 3

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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


def is_fashion_mnist_dir(root: str) -> bool:
    """Whether ``root`` holds the Fashion-MNIST training images (IDX, gzip or raw)."""
    return any(os.path.isfile(os.path.join(root, "train-images-idx3-ubyte" + ext)) for ext in (".gz", ""))


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


