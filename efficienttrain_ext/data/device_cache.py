"""The GPU-resident data path (``data.device_cache: true``): decoded uint8 images held on the training device.

:func:`cache_datasets` decodes the training and validation sets once (the host's loader workers help with this
one pass only) into two :class:`DeviceImages`: uint8 ``[N, C, H, W]`` and int64 labels on the device.

* Training images are stored as decoded, without the training crop: they must all have one size (CIFAR-10's 32 x
  32), or ``data.cache_size: S`` brings each to ``S x S`` first (the shorter side resized to S with the
  configured interpolation and antialiasing, then the centre S x S: for photos of up to 4:3 that keeps at least
  3/4 of the frame; the random crop then draws from that square). Mixed sizes without ``cache_size`` are an error.
* Validation images are stored after their evaluation transform (resize and centre crop to the final size), so
  evaluation batches are slices of the device tensor.
* Memory rule: both sets together must fit in ``data.cache_max_gib`` and, on CUDA, in half of the free device
  memory when the cache is built (the rest is the model's); checked from the first image before decoding the rest.

:class:`DeviceEpochLoader` (the trainer's ``EpochLoader`` for this path) then makes every training batch on the
device: this rank's micro-batches of the epoch's global order (the torch loader's samples, sample for sample:
:mod:`~.order`), an unreadable row replaced by the next readable one (:mod:`~.unreadable`'s rule), the crop boxes
and flips drawn once per epoch on the CPU for every position of the global order from (seed, epoch) (so a resumed
run repeats them exactly, on any device and number of ranks), the rows gathered with ``index_select`` and
cropped, resized and mirrored in one batched call (:func:`~.device_crop.resized_crop`). Its batches are what the
torch loader's are: uint8 ``[N, C, S, S]`` at the final size, labels, the paths replaced; the device batch path
(RandAugment, low-frequency crop, ...) follows unchanged. Every rank holds the whole training set.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms as T

from ..errors import DataError
from .build import Datasets
from .device_crop import draw_crop_params, resized_crop
from .order import epoch_permutation
from .transforms import INTERPOLATIONS, TrainCrop, TrainTransform

__all__ = ["DeviceImages", "DeviceEpochLoader", "DeviceValLoader", "cache_datasets", "read_images", "rank_positions"]

_GIB = 1 << 30


@dataclass
class DeviceImages:
    """A dataset held on the device: ``images`` uint8 ``[N, C, H, W]``, ``targets`` int64 ``[N]``; ``bad``: the
    rows of images that could not be decoded (zeros here; never trained on), with their paths;
    ``crop``: the training crop (None for a validation set, stored after its evaluation transform)."""

    images: torch.Tensor
    targets: torch.Tensor
    crop: TrainCrop | None = None
    bad: dict[int, str] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 or self.images.dim() != 4:
            got = f"{self.images.dtype} {tuple(self.images.shape)}" if isinstance(self.images, torch.Tensor) \
                else type(self.images).__name__
            raise DataError(f"a device cache holds uint8 images [N, C, H, W], got {got}")
        if self.targets.shape != (self.images.shape[0],):
            raise DataError(f"a device cache needs one label per image: {self.images.shape[0]} images, labels "
                            f"{tuple(self.targets.shape)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def replacement(self) -> torch.Tensor:
        """Row -> the row trained in its place (CPU int64): itself, or for an unreadable one the next readable row
        (``i + 1, i + 2, ...`` modulo N), the torch loader's rule (:mod:`~.unreadable`)."""
        n = len(self)
        out = torch.arange(n, dtype=torch.int64)
        if len(self.bad) >= n:
            raise DataError(f"none of the {n} cached images can be read")
        for i in self.bad:
            j = (i + 1) % n
            while j in self.bad:
                j = (j + 1) % n
            out[i] = j
        return out

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, int]:
        """Sample ``i`` as a dataset gives it (e.g. for ``etrain mae``'s figure): image (None if unreadable), label."""
        return (None if i in self.bad else self.images[i]), int(self.targets[i])

    @property
    def nbytes(self) -> int:
        return self.images.numel() + 8 * self.targets.numel()


# ----- reading a dataset once

def _base_and_indices(dataset: Dataset) -> tuple[Dataset, np.ndarray | None]:
    """The dataset under any ``Subset`` s, and the composed indices into it (None: all of it)."""
    indices: np.ndarray | None = None
    while isinstance(dataset, Subset):  # innermost indices first: compose them from the outside in
        sub = np.asarray(dataset.indices, dtype=np.int64)
        indices = sub if indices is None else sub[indices]
        dataset = dataset.dataset
    return dataset, indices


def _with_transform(dataset: Dataset, transform) -> Dataset:
    """``dataset`` (under its Subsets) read through ``transform`` instead of its own; the dataset must apply
    ``self.transform`` to a PIL image, as the ImageFolder, shard and Fashion-MNIST sets here do."""
    base, indices = _base_and_indices(dataset)
    if not hasattr(base, "transform"):
        raise DataError(f"data.device_cache cannot read a {type(base).__name__}: it has no transform to replace "
                        "(use data.device_cache=false)")
    base = copy.copy(base)  # a shallow copy: the file list / arrays are shared, the transform is its own
    base.transform = transform
    return base if indices is None else Subset(base, indices.tolist())


def _collate_list(batch):
    return batch


def _check_room(what: str, n: int, shape: tuple, need: int, max_bytes: int | None, taken: int = 0) -> None:
    """A DataError when ``need`` bytes (with ``taken`` already cached) exceed ``max_bytes`` (the memory rule)."""
    if max_bytes is None or need + taken <= max_bytes:
        return
    already = f" (with {taken / _GIB:.2f} GiB already cached)" if taken else ""
    raise DataError(f"data.device_cache: the {what} ({n} images of {tuple(shape)}) needs {need / _GIB:.2f} GiB on the "
                    f"device{already}, more than the limit of {max_bytes / _GIB:.2f} GiB (data.cache_max_gib, and on "
                    "CUDA half the free memory); use a smaller data.cache_size, data.train_subset, or "
                    "data.device_cache=false")


def read_images(dataset: Dataset, *, workers: int = 0, max_bytes: int | None = None, what: str = "training set",
                extra_bytes: int = 0) -> tuple[torch.Tensor, torch.Tensor, dict[int, str]]:
    """Every sample of ``dataset`` (whose transform gives uint8 CHW tensors) as one uint8 ``[N, C, H, W]`` CPU
    tensor, its int64 labels, and the unreadable rows ``{index: path}``. A DataError when the images differ in
    size, are not uint8 CHW, or would exceed ``max_bytes`` (with ``extra_bytes`` already taken)."""
    n = len(dataset)
    if n == 0:
        raise DataError(f"the {what} is empty: nothing to cache on the device")
    loader = DataLoader(dataset, batch_size=256, shuffle=False, num_workers=workers, collate_fn=_collate_list)
    out: torch.Tensor | None = None
    targets = torch.empty(n, dtype=torch.int64)
    bad: dict[int, str] = {}
    k = 0
    for batch in loader:
        for sample in batch:
            img, target = sample[0], sample[1]
            targets[k] = int(target)
            if img is None:  # SafeImageFolder / shards: an image that cannot be decoded
                bad[k] = str(sample[2]) if len(sample) > 2 else f"sample {k}"
                k += 1
                continue
            if not isinstance(img, torch.Tensor) or img.dtype != torch.uint8 or img.dim() != 3:
                got = f"{img.dtype} {tuple(img.shape)}" if isinstance(img, torch.Tensor) else type(img).__name__
                raise DataError(f"data.device_cache: the {what} gives {got} images, not uint8 [C, H, W]")
            if out is None:
                _check_room(what, n, img.shape, n * (img.numel() + 8), max_bytes, extra_bytes)
                out = torch.empty((n, *img.shape), dtype=torch.uint8)
            elif img.shape != out.shape[1:]:
                raise DataError(
                    f"data.device_cache: the {what} holds images of different sizes ({tuple(out.shape[1:])} and "
                    f"{tuple(img.shape)} at {sample[2] if len(sample) > 2 else f'sample {k}'}); set "
                    "data.cache_size=S to store each as S x S (shorter side resized to S, centre crop), or "
                    "data.device_cache=false")
            out[k] = img
            k += 1
    if out is None:
        raise DataError(f"data.device_cache: no image of the {what} could be decoded ({len(bad)} unreadable, e.g. "
                        f"{next(iter(bad.values()))})")
    for i in bad:
        out[i] = 0
    return out, targets, bad


def _stored_arrays(dataset: Dataset, max_bytes: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The images and labels of a dataset held as one uint8 array (``images`` [N, H, W, 3] RGB, or [N, H, W] grey
    made RGB as ``PIL.convert`` does; ``targets``), under its Subsets, without a per-image round trip through PIL;
    None for any other dataset."""
    base, indices = _base_and_indices(dataset)
    images, targets = getattr(base, "images", None), getattr(base, "targets", None)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or targets is None \
            or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        return None
    if indices is None:
        indices = np.arange(len(images))
    _check_room("training set", len(indices), (3, *images.shape[1:3]),
                len(indices) * (3 * images.shape[1] * images.shape[2] + 8), max_bytes)
    x = torch.from_numpy(np.ascontiguousarray(images[indices]))
    x = x.unsqueeze(1).expand(-1, 3, -1, -1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    y = torch.as_tensor(np.asarray(targets, dtype=np.int64)[indices])
    return x.contiguous(), y


def _memory_cap(device: torch.device, cap_gib: float) -> int:
    cap = int(cap_gib * _GIB)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cap = min(cap, free // 2)  # the other half: the model, its activations and the batch path
    return cap


def cache_datasets(data: Datasets, device: torch.device, *, cache_size: int | None = None, workers: int = 0,
                   max_gib: float = 4.0) -> Datasets:
    """``data`` with its training and validation sets decoded onto ``device`` as :class:`DeviceImages` (module
    docstring). The training set's own transform must be the training crop (it says how to crop on the device)."""
    base, _ = _base_and_indices(data.train)
    tf = getattr(base, "transform", None)
    if not isinstance(tf, TrainTransform):
        raise DataError(f"data.device_cache: the training set's transform is {type(tf).__name__}, not the "
                        "training crop (data.transforms.train_transform): the device cannot tell how to crop")
    crop = tf.crop
    raw: list = []
    if cache_size is not None:
        raw = [T.Resize(cache_size, interpolation=INTERPOLATIONS[crop.interpolation], antialias=True),
               T.CenterCrop(cache_size)]
    cap = _memory_cap(device, max_gib)
    arrays = _stored_arrays(data.train, cap) if cache_size is None else None
    if arrays is not None:  # CIFAR-10, Fashion-MNIST: already decoded
        (x, y), bad = arrays, {}
    else:
        x, y, bad = read_images(_with_transform(data.train, T.Compose([*raw, T.PILToTensor()])), workers=workers,
                                max_bytes=cap)
    train = DeviceImages(x.to(device), y.to(device), crop, bad)
    vx, vy, vbad = read_images(data.val, workers=workers, max_bytes=cap, what="validation set",
                               extra_bytes=train.nbytes)
    if vx.shape[-2:] != (crop.size, crop.size):
        raise DataError(f"data.device_cache: the validation transform gives {tuple(vx.shape[-2:])} images, not "
                        f"the final size {crop.size}")
    val = DeviceImages(vx.to(device), vy.to(device), None, vbad)
    return replace(data, train=train, val=val)


# ----- loaders

def rank_positions(n: int, batch: int, world: int, rank: int) -> torch.Tensor:
    """The positions in the epoch's global permutation that rank ``rank`` of ``world`` trains on, in its order: its
    micro-batches ``rank, rank + world, ...`` of ``batch`` (:class:`~.order.GlobalBatchSampler`'s rule)."""
    steps = (n // world) // batch
    first = (torch.arange(steps, dtype=torch.int64) * world + rank) * batch
    return (first.view(-1, 1) + torch.arange(batch, dtype=torch.int64)).view(-1)


def _crop_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + 29) % (2**63 - 1)


class DeviceEpochLoader:
    """``data.device_cache``'s training loader (module docstring), the trainer's ``EpochLoader``: this rank's
    micro-batches of ``batch`` of the epoch's global order, ``len() == (len // world) // batch``. ``workers`` and
    ``pin_memory`` are taken for the loader interface and not used (no loader workers: all runs on the device)."""

    def __init__(self, dataset: DeviceImages, batch: int, info, *, workers: int = 0, seed: int = 0,
                 pin_memory: bool = False):
        if not isinstance(dataset, DeviceImages) or dataset.crop is None:
            raise DataError(f"the device loader needs a cached training set (DeviceImages with its crop), got "
                            f"{type(dataset).__name__}")
        self.data, self.batch, self.seed = dataset, int(batch), int(seed)
        self.rank, self.world = int(info.rank), int(info.world)
        self.device = dataset.images.device
        self.positions = rank_positions(len(dataset), self.batch, self.world, self.rank)
        # an unreadable row -> the paths tried in its place before a readable one (what the torch loader reports)
        repl, n = dataset.replacement, len(dataset)
        self._tried = {i: [dataset.bad[(i + k) % n] for k in range((int(repl[i]) - i) % n)] for i in dataset.bad}
        self.steps = len(self.positions) // self.batch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.steps

    def order(self, epoch: int | None = None) -> torch.Tensor:
        """The rows (CPU int64) this rank trains on in ``epoch`` (default: the current one), in order, before
        unreadable ones are replaced: the torch loader's samples."""
        perm = epoch_permutation(len(self.data), self.seed, self.epoch if epoch is None else epoch)
        return perm[self.positions]

    def params(self, epoch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The crop boxes ``(i, j, h, w)`` and flips of this rank's positions in ``epoch`` (CPU). They are drawn for
        every position of the global order from (seed, epoch) alone, so a global batch gets the same crops on any
        number of ranks (an elastic resume)."""
        e = self.epoch if epoch is None else epoch
        c, n = self.data.crop, len(self.data)
        g = torch.Generator().manual_seed(_crop_seed(self.seed, e))
        h, w = self.data.images.shape[-2:]
        boxes = draw_crop_params(n, int(h), int(w), c.scale, c.ratio, g)
        flips = torch.rand(n, generator=g) < c.hflip
        return boxes[self.positions], flips[self.positions]

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":  # page-locked, so the copy is queued, not waited for
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        b, c, bad = self.batch, self.data.crop, self.data.bad
        order = self.order()
        rows = self.data.replacement[order] if bad else order  # an unreadable row: the next readable one
        boxes, flips = self.params()
        rows_d, boxes_d, flips_d = (self._to_device(t) for t in (rows, boxes, flips))
        for k in range(self.steps):
            span = slice(k * b, (k + 1) * b)
            # the paths replaced in this batch (known on the host: no device sync), as the torch loader reports them
            names = [p for i in order[span].tolist() if i in bad for p in self._tried[i]] if bad else []
            idx = rows_d[span]
            x = resized_crop(self.data.images.index_select(0, idx), boxes_d[span], c.size, c.interpolation,
                             flips_d[span])
            yield x, self.data.targets.index_select(0, idx), names


class DeviceValLoader:
    """Validation batches of a cached validation set, in order; on several ranks the rank's strided shard (as
    ``engine/loaders.build_val_loader``). Unreadable images are left out (each image counts once) and reported with
    the first batch."""

    def __init__(self, dataset: DeviceImages, batch: int, info):
        if not isinstance(dataset, DeviceImages):
            raise DataError(f"the device validation loader needs a cached set, got {type(dataset).__name__}")
        rows = torch.arange(len(dataset), dtype=torch.int64)
        if info.world > 1:
            rows = rows[info.rank::info.world]
        good = torch.tensor([i for i in rows.tolist() if i not in dataset.bad], dtype=torch.int64)
        self.data, self.batch, self.rows = dataset, int(batch), good.to(dataset.images.device)
        self.names = [dataset.bad[i] for i in rows.tolist() if i in dataset.bad]

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        for k in range(len(self)):
            idx = self.rows[k * self.batch:(k + 1) * self.batch]
            yield (self.data.images.index_select(0, idx), self.data.targets.index_select(0, idx),
                   self.names if k == 0 else [])
