"""The training and validation sets of a configuration: :func:`build_datasets`.

``dataset: auto`` (the default) picks the kind from ``root``: a folder with ``train/`` class folders is an
ImageFolder, a folder with the IDX files is Fashion-MNIST, and no root means Fashion-MNIST at its Debian path
(or tar shards, ``wds``, when a shard pattern is given). A ``.tar``/``.tar.gz`` root is unpacked once into the cache
(:mod:`.archives`) and read as the folder it holds. ``cifar10``: :mod:`.cifar10`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from torch.utils.data import Dataset, Subset

from ..errors import DataError
from .archives import data_root, is_archive
from .cifar10 import CIFAR10_MEAN, CIFAR10_STD, ArrayImageDataset, load_cifar10
from .fashion_mnist import (FASHION_MNIST_MEAN, FASHION_MNIST_ROOT, FASHION_MNIST_STD, FashionMNIST,
                            is_fashion_mnist_dir)
from .image_folder import SafeImageFolder
from .shards import TarShardDataset, expand_shards
from .splits import stratified_split, stratified_subset
from .transforms import eval_transform, train_transform

__all__ = ["Datasets", "DATASETS", "IMAGENET_MEAN", "IMAGENET_STD", "build_datasets", "resolve_dataset"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DATASETS = ("auto", "fashion_mnist", "imagefolder", "wds", "cifar10")


@dataclass
class Datasets:
    train: Dataset
    val: Dataset
    num_classes: int
    classes: Sequence[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _targets(ds: Dataset) -> Sequence[int]:
    if isinstance(ds, Subset):
        t = _targets(ds.dataset)
        return [t[i] for i in ds.indices]
    return ds.targets


def _subset(ds: Dataset, n: int | None, stratify: bool = False) -> Dataset:
    """The first n samples of a dataset stored shuffled (Fashion-MNIST; CIFAR-10 in its fixed shuffle), which hold
    every class; a class-stratified subset of one stored class by class (an ImageFolder, shards), whose first n
    would hold only its first classes."""
    if n is None or n >= len(ds):
        return ds
    if not stratify:
        return Subset(ds, range(int(n)))
    if isinstance(ds, Subset):  # index the underlying dataset directly (no Subset of a Subset)
        keep = stratified_subset(_targets(ds), n)
        return Subset(ds.dataset, [ds.indices[i] for i in keep])
    return Subset(ds, stratified_subset(_targets(ds), n))


def resolve_dataset(dataset: str, root: str | None, shards: str | None = None) -> str:
    """The dataset kind that ``dataset: auto`` means for ``root`` and ``shards`` (other kinds are returned as
    they are)."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose from {list(DATASETS)}")
    if dataset != "auto":
        return dataset
    if shards:
        return "wds"
    if root is None:
        return "fashion_mnist"
    if is_archive(root):
        root = data_root(root)
    if not os.path.isdir(root):
        raise DataError(f"data root {root} does not exist")
    if os.path.isdir(os.path.join(root, "train")):
        return "imagefolder"
    if is_fashion_mnist_dir(root):
        return "fashion_mnist"
    raise DataError(f"cannot tell what {root} holds: expected an ImageFolder (train/<class>/*.jpg, val/<class>/...) "
                    "or the Fashion-MNIST IDX files; set data.dataset to say which")


def _image_folder(root: str, tt, et, val_split: float | None, split_seed: int):
    if not os.path.isdir(root):
        raise DataError(f"image folder root {root} does not exist")
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    if val_split is not None:  # validation images come from train/ (val/, if any, is left alone)
        full = SafeImageFolder(train_dir, tt)
        tr, va = stratified_split(full.targets, val_split, split_seed)
        return Subset(full, tr), Subset(SafeImageFolder(train_dir, et), va), full.classes
    if not os.path.isdir(val_dir) and os.path.isdir(os.path.join(root, "test")):
        val_dir = os.path.join(root, "test")  # e.g. CIFAR-10 as class folders: its test set is the validation set
        print(f"data: {root} has train/ and test/ but no val/: validating on test/", flush=True)
    if not os.path.isdir(val_dir):
        raise DataError(f"{root} has train/ but no val/ folder (nor test/): add val/<class>/ images, or set "
                        "data.val_split (e.g. --set data.val_split=0.1) to hold out a seeded, class-stratified part "
                        "of train/")
    train, val = SafeImageFolder(train_dir, tt), SafeImageFolder(val_dir, et)
    if train.classes != val.classes:
        raise DataError(f"{root}: train classes {train.classes} differ from {os.path.basename(val_dir)} classes "
                        f"{val.classes}")
    return train, val, train.classes


def _tar_shards(shards: str | None, val_shards: str | None, tt, et, val_split: float | None, split_seed: int):
    if not shards:
        raise DataError("dataset 'wds' needs data.shards, a shard pattern such as /data/train-{000000..000009}.tar "
                        "(write one with 'etrain shards IMAGEFOLDER OUT_DIR')")
    paths = expand_shards(shards)
    if val_split is not None:  # validation samples come from the training shards
        full = TarShardDataset(paths, tt)
        tr, va = stratified_split(full.targets, val_split, split_seed)
        return Subset(full, tr), Subset(TarShardDataset(paths, et), va), full.classes
    if not val_shards:
        raise DataError("dataset 'wds' needs data.val_shards (a shard pattern) or data.val_split (e.g. "
                        "--set data.val_split=0.1) for the validation set")
    train, val = TarShardDataset(paths, tt), TarShardDataset(expand_shards(val_shards), et)
    if train.classes[:len(val.classes)] != val.classes:
        raise DataError(f"validation shard classes {val.classes[:5]}... differ from the training shards' "
                        f"{train.classes[:5]}...")
    return train, val, train.classes


def build_datasets(dataset: str, root: str | None, final_size: int, *, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                   hflip: float = 0.5, interpolation: str = "bicubic", crop_pct: float | None = None,
                   train_subset: int | None = None, val_subset: int | None = None, val_split: float | None = None,
                   split_seed: int = 0, shards: str | None = None, val_shards: str | None = None,
                   download: bool = False) -> Datasets:
    """Training and validation sets with the host-side transforms (uint8 output). ``download``: cifar10 only
    (:func:`.cifar10.load_cifar10`)."""
    tt = train_transform(final_size, scale, ratio, hflip, interpolation)
    et = eval_transform(final_size, crop_pct, interpolation)
    kind = resolve_dataset(dataset, root, shards)
    if kind == "wds":
        train, val, classes = _tar_shards(shards, val_shards, tt, et, val_split, split_seed)
        return Datasets(_subset(train, train_subset, True), _subset(val, val_subset, True), len(classes), classes,
                        IMAGENET_MEAN, IMAGENET_STD)
    if kind == "fashion_mnist":
        root = root or FASHION_MNIST_ROOT
        if not os.path.isdir(root):
            raise DataError(
                f"Fashion-MNIST directory {root} not found; install it with 'apt-get install -y "
                "dataset-fashion-mnist' or pass --data-root DIR holding the IDX files"
            )
        train, val = FashionMNIST(root, True, tt), FashionMNIST(root, False, et)
        if val_split is not None:  # hold out part of the training set instead of the test set
            tr, va = stratified_split(train.targets.tolist(), val_split, split_seed)
            train, val = Subset(train, tr), Subset(FashionMNIST(root, True, et), va)
        classes, mean, std = FashionMNIST.classes, FASHION_MNIST_MEAN, FASHION_MNIST_STD
    elif kind == "cifar10":
        train, val = load_cifar10(root, tt, et, download=download)
        classes, mean, std = train.classes, CIFAR10_MEAN, CIFAR10_STD
        if val_split is not None:  # hold out part of the training set instead of the test set
            tr, va = stratified_split(train.targets, val_split, split_seed)
            held = ArrayImageDataset(train.images, train.targets, classes, et)  # same arrays, eval transform
            train, val = Subset(train, tr), Subset(held, va)
    else:
        if not root:
            raise DataError("dataset 'imagefolder' needs --data-root DIR with train/ and val/ subfolders (or a "
                            ".tar/.tar.gz archive of them)")
        train, val, classes = _image_folder(data_root(root), tt, et, val_split, split_seed)
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    by_class = kind == "imagefolder"  # stored class by class (Fashion-MNIST and CIFAR-10 come shuffled)
    return Datasets(_subset(train, train_subset, by_class), _subset(val, val_subset, by_class), len(classes), classes,
                    mean, std)
