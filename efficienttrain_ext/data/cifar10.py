"""CIFAR-10 (``data.dataset: cifar10``) as decoded uint8 arrays, from any of the forms it comes in:

* a tar archive of JPEG/PNG class folders, ``train/<class>/*.jpg`` and ``test/<class>/*.jpg`` (unpacked once into
  the cache, :mod:`.archives`);
* that tree, unpacked;
* the python pickle directory ``cifar-10-batches-py`` (what ``torchvision.datasets.CIFAR10(root, download=True)``
  writes), or the folder holding it; with ``data.download: true`` it is downloaded there when ``root`` holds none
  of these.

``test/`` (the pickle's ``test_batch``) is the validation split. All images are 32 x 32, so each split is held as
one ``[N, 32, 32, 3]`` array (150 MB for the training set); the decoded arrays of a JPEG tree are saved beside it
(``.etrain-decoded-<split>.npz``, when the folder is writable), so only the first run pays the ~10 s of decoding.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zipfile
from typing import Callable, Sequence

import numpy as np
import torchvision.datasets
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes

from ..errors import DataError
from .archives import ARCHIVE_SUFFIXES, data_root, is_archive

__all__ = ["CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "ArrayImageDataset", "download_cifar10", "load_cifar10"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # training-set statistics
_PICKLE_DIR = "cifar-10-batches-py"
_PICKLE_SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_WANTED = (f"the CIFAR-10 JPEG archive (e.g. cifar10-jpg.tar.gz: train/<class>/*.jpg, test/<class>/*.jpg), its "
           f"unpacked folder, or the python pickle directory {_PICKLE_DIR} (data.download=true writes it where the "
           "machine is online)")


class ArrayImageDataset(Dataset):
    """RGB uint8 images ``[N, H, W, 3]`` with integer targets, as PIL images through ``transform``."""

    def __init__(self, images: np.ndarray, targets: Sequence[int], classes: Sequence[str],
                 transform: Callable | None = None):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise DataError(f"expected uint8 images [N, H, W, 3], got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(targets):
            raise DataError(f"{len(images)} images but {len(targets)} targets")
        self.images, self.targets, self.classes = images, [int(t) for t in targets], list(classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        img = Image.fromarray(np.asarray(self.images[i]))
        return (self.transform(img) if self.transform else img), self.targets[i]


def _pixels(raw: np.ndarray, path: str) -> np.ndarray:
    """The batch's pixels as uint8; integers in 0-255 are accepted from re-pickled copies, anything else (floats in
    [0, 1], values that would wrap) is refused rather than cast."""
    if raw.dtype != np.uint8:
        if raw.dtype.kind not in "iu" or (raw.size and (raw.min() < 0 or raw.max() > 255)):
            lo_hi = f" in [{raw.min()}, {raw.max()}]" if raw.size and raw.dtype.kind in "iuf" else ""
            raise DataError(f"{path}: 'data' must hold pixels as uint8 (0-255), got {raw.dtype}{lo_hi}")
        raw = raw.astype(np.uint8)
    return raw


def _check_labels(targets: Sequence[int], classes: Sequence[str], what: str) -> None:
    bad = sorted({t for t in targets if not isinstance(t, (int, np.integer)) or not 0 <= t < len(classes)},
                 key=repr)
    if bad:
        raise DataError(f"{what}: labels {bad[:5]} are not class indices 0-{len(classes) - 1} ({len(classes)} "
                        "classes in batches.meta)")


def _read_pickle_split(folder: str, split: str) -> tuple[np.ndarray, list[int]]:
    # the format of https://www.cs.toronto.edu/~kriz/cifar.html: dicts with 'data' (N x 3072, channel planes) and
    # 'labels'. Read here rather than through torchvision's CIFAR10, which also insists on the official files' md5
    # sums (so a subset or re-pickled copy could not be read)
    images, targets = [], []
    for name in _PICKLE_SPLITS[split]:
        path = os.path.join(folder, name)
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            data = _pixels(np.asarray(entry["data"]), path).reshape(-1, 3, 32, 32)
            labels = list(entry["labels"])
        except FileNotFoundError:
            raise DataError(f"CIFAR-10 pickle directory {folder} lacks {name}") from None
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as e:
            raise DataError(f"{path} is not a CIFAR-10 python batch: {e}") from e
        if len(labels) != len(data):
            raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
        images.append(data.transpose(0, 2, 3, 1))
        targets += labels
    return np.ascontiguousarray(np.concatenate(images)), targets


def _pickle_classes(folder: str) -> list[str]:
    try:
        with open(os.path.join(folder, "batches.meta"), "rb") as f:
            return list(pickle.load(f, encoding="latin1")["label_names"])
    except (OSError, pickle.UnpicklingError, EOFError, KeyError) as e:
        raise DataError(f"cannot read the class names from {folder}/batches.meta: {e}") from e


def _list_files(folder: str, classes: list[str]) -> list[tuple[str, int]]:
    """``(path, class index)`` of every image under ``folder/<class>/``; each class must have one (as in
    torchvision's ImageFolder: an empty class would train a class it never sees)."""
    files = []
    for i, c in enumerate(classes):
        found = [(os.path.join(folder, c, f), i) for f in sorted(os.listdir(os.path.join(folder, c)))
                 if f.lower().endswith(IMG_EXTENSIONS)]
        if not found:
            raise DataError(f"{folder}/{c}/ holds no images ({', '.join(IMG_EXTENSIONS)})")
        files += found
    return files


def _fingerprint(files: list[tuple[str, int]]) -> str:
    """What the decoded cache must match: every file's path (within the split), class, size and modification time,
    so a replaced, added, removed or moved image decodes afresh (the stats of 60,000 files take ~0.1 s)."""
    h = hashlib.sha256()
    for path, label in files:
        st = os.stat(path)
        rel = os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))
        h.update(f"{rel}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _decode_folder(folder: str, files: list[tuple[str, int]]) -> tuple[np.ndarray, list[int]]:
    images = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
    for k, (path, _) in enumerate(files):
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except Exception as e:  # any decoder failure
            raise DataError(f"cannot decode {path}: {e}") from e
        if img.size != (32, 32):
            raise DataError(f"{path} is {img.size[0]}x{img.size[1]}; CIFAR-10 images are 32x32 (use data.dataset="
                            "imagefolder for other image folders)")
        images[k] = np.asarray(img)
    # a fixed shuffle, as the pickle batches are stored: data.train_subset / val_subset take the first n images,
    # which then hold every class
    order = np.random.default_rng(0).permutation(len(files))
    return images[order], [files[k][1] for k in order]


def _folder_split(root: str, split: str, classes: list[str]) -> tuple[np.ndarray, list[int]]:
    """A split of an unpacked tree, from the decoded cache when it was written from the same files."""
    folder, cache = os.path.join(root, split), os.path.join(root, f".etrain-decoded-{split}.npz")
    files = _list_files(folder, classes)
    key = _fingerprint(files)
    if os.path.isfile(cache):
        try:
            with np.load(cache) as z:
                if str(z["fingerprint"]) == key:
                    return z["images"], z["targets"].tolist()
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # unreadable, or from another version: decode again
    images, targets = _decode_folder(folder, files)
    try:  # write-then-rename, so a concurrent reader sees the old cache or the whole new one
        fd, tmp = tempfile.mkstemp(prefix=".etrain-decoded-", suffix=".npz", dir=root)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=images, targets=np.asarray(targets, dtype=np.int64), fingerprint=np.asarray(key))
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only tree: decode each time
    return images, targets


def _pickle_folder(root: str) -> str:
    return root if os.path.isfile(os.path.join(root, "data_batch_1")) else os.path.join(root, _PICKLE_DIR)


def _holds_cifar10(root: str) -> bool:
    """Whether ``root`` is an archive or holds one of the folder forms (what :func:`load_cifar10` reads)."""
    return is_archive(root) or os.path.isdir(_pickle_folder(root)) or all(
        os.path.isdir(os.path.join(root, s)) for s in ("train", "test"))


def download_cifar10(root: str) -> None:
    """Where ``root`` holds no CIFAR-10 (:func:`load_cifar10`'s forms), download the python pickle directory into it
    through torchvision, which checks the archive's md5. One process per folder: under DDP rank 0 downloads and the
    others wait (engine/trainer.py)."""
    if _holds_cifar10(root):
        return
    if root.endswith(ARCHIVE_SUFFIXES):
        raise DataError(f"data.download=true downloads into a folder, but --data-root {root} names an archive that "
                        "does not exist")
    print(f"data: downloading CIFAR-10 into {root} (torchvision.datasets.CIFAR10, once)", flush=True)
    try:
        torchvision.datasets.CIFAR10(root, train=True, download=True)
    except Exception as e:  # URLError, an md5 mismatch (RuntimeError), a full disk...: all end the run the same way
        raise DataError(f"cannot download CIFAR-10 into {root}: {type(e).__name__}: {e} (without a network, pass "
                        f"{_WANTED})") from e


def load_cifar10(root: str | None, train_transform: Callable | None = None, eval_transform: Callable | None = None,
                 cache: str | None = None, download: bool = False) -> tuple[ArrayImageDataset, ArrayImageDataset]:
    """``(train, test)`` datasets from ``root`` (any form in the module docstring). ``download``: where ``root`` holds
    none of them, download the pickle directory into it first (torchvision.datasets.CIFAR10)."""
    if not root:
        raise DataError(f"dataset cifar10 needs --data-root PATH: {_WANTED}")
    if download:
        download_cifar10(root)
    if not os.path.exists(root):
        raise DataError(f"CIFAR-10 data root {root} does not exist; expected {_WANTED}, or set data.download=true to "
                        "download the pickle directory into it")
    root = data_root(root, cache)
    if not os.path.isdir(root):
        raise DataError(f"CIFAR-10 data root {root} is neither a folder nor a .tar/.tar.gz/.tgz archive; expected "
                        f"{_WANTED}")
    pickles = _pickle_folder(root)
    if os.path.isdir(pickles):
        classes = _pickle_classes(pickles)
        (tr, tr_y), (te, te_y) = _read_pickle_split(pickles, "train"), _read_pickle_split(pickles, "test")
        _check_labels(tr_y, classes, f"{pickles} (training batches)")
        _check_labels(te_y, classes, f"{pickles}/test_batch")
    elif os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, "test")):
        try:
            classes, _ = find_classes(os.path.join(root, "train"))
        except FileNotFoundError as e:
            raise DataError(f"{root}/train has no class folders: {e}") from e
        test_classes = sorted(e.name for e in os.scandir(os.path.join(root, "test")) if e.is_dir())
        if test_classes != classes:
            raise DataError(f"{root}: train classes {classes} differ from test classes {test_classes}")
        (tr, tr_y), (te, te_y) = _folder_split(root, "train", classes), _folder_split(root, "test", classes)
    else:
        raise DataError(f"{root} holds neither train/ and test/ class folders nor the pickle directory "
                        f"{_PICKLE_DIR}; expected {_WANTED}")
    return (ArrayImageDataset(tr, tr_y, classes, train_transform), ArrayImageDataset(te, te_y, classes,
                                                                                     eval_transform))
