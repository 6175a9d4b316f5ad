"""The NVIDIA DALI training loader (``data.loader: dali``): JPEG decoding on the GPU (nvJPEG) or the CPU.

Graph (one DALI pipeline per epoch)::

    encoded bytes (external source, read here in the epoch's order)
      -> fn.decoders.image(device="mixed" | "cpu", RGB)
      -> fn.random_resized_crop(final size, random_area=scale, random_aspect_ratio=ratio, cubic|linear, antialias)
      -> fn.crop_mirror_normalize(mirror=coin_flip(hflip), uint8, CHW)      -> uint8 [N, 3, S, S]

The crop settings come from the dataset's own transform (:class:`~.transforms.TrainCrop`), so both loaders crop
alike; DALI draws the area uniformly in ``scale`` and the aspect ratio log-uniformly in ``ratio`` with 10
attempts, like torchvision. Images leave on the training GPU (``mixed``) or on the CPU (``cpu``); the device-side
path after the loader (RandAugment, low-frequency crop, mixup) is the same for both loaders.

Order and DDP shards: :class:`~.order.GlobalBatchSampler` (the torch loader's order, sample for sample: one global
per-epoch permutation that every rank slices, the same for any number of ranks). Every rank runs
``steps_per_epoch(len(dataset), batch, world)`` batches.

Unreadable images (replaced and reported, as the torch loader does, :mod:`~.unreadable`): DALI's decoder stops the
whole pipeline on a bad image, so (1) every image's bytes are checked before DALI sees them
(:func:`~.encoded.readable`: JPEG/PNG markers, else PIL); one that fails is replaced by the next readable image of
the dataset (its label too), so batches keep their size; (2) a
decoder error that gets past the check ends the pipeline: the loader decodes the batches in flight with PIL
(then, if PIL reads them all, with DALI one by one), marks the culprits and builds the pipeline again at the
failed batch. Each rebuild must find a new bad image, so this ends; DALI itself raises rather than hangs.

Resume: an epoch's pipeline is seeded from (seed, epoch, rank), so epoch ``e`` of a resumed run reads and crops
exactly what it did in the uninterrupted run (same DALI version, device kind and file contents; the CPU output
does not depend on the thread count). A rebuild after a decoder error re-seeds the rest of that epoch from the
failed batch, so an epoch with such an image is exact only between runs that found it at the same place. The
trainer checkpoints at epoch ends; a mid-epoch start is not offered.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .encoded import EncodedView, encoded_view, looks_complete, pil_decodes
from .order import GlobalBatchSampler

__all__ = ["DaliEpochLoader", "dali_available", "decode_device"]

_LOOKAHEAD = 3  # batches read ahead by the reader threads (DALI prefetches 2)


def _dali():
    try:
        from nvidia.dali import fn, pipeline_def, types
        from nvidia.dali.plugin.pytorch import feed_ndarray
    except ImportError as e:
        raise DataError("data.loader=dali needs NVIDIA DALI: pip install nvidia-dali-cuda130 (or pip install -e "
                        f".[data]); import failed: {e}") from e
    return fn, pipeline_def, types, feed_ndarray


def dali_available() -> bool:
    try:
        _dali()
    except DataError:
        return False
    return True


def decode_device(pref: str, on_cuda: bool) -> str:
    """``mixed`` (nvJPEG) or ``cpu`` for ``data.dali_device`` ``pref``; auto means mixed when training on CUDA."""
    if pref == "auto":
        return "mixed" if on_cuda and torch.cuda.is_available() else "cpu"
    if pref == "mixed" and not torch.cuda.is_available():
        raise DataError("data.dali_device=mixed decodes with nvJPEG on a GPU, and no CUDA GPU is visible; use "
                        "data.dali_device=cpu (or auto)")
    if pref not in ("cpu", "mixed"):
        raise DataError(f"data.dali_device must be auto, cpu or mixed, got {pref!r}")
    return pref


def _seed(seed: int, epoch: int, rank: int, start: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101 + start * 7_919 + 17) % (2**31 - 1)


class _EpochSource:
    """DALI's external source for one pipeline: batch ``start + iteration`` of ``order``, read by a few threads
    ahead of DALI. Records, per batch, the samples it really holds (unreadable ones replaced) and what was replaced."""

    def __init__(self, loader: "DaliEpochLoader", order: np.ndarray, start: int):
        self.loader, self.order, self.start = loader, order, start
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="etrain-dali-read")
        self.pending: dict[int, Future] = {}
        self.used: dict[int, tuple[np.ndarray, list[str]]] = {}  # batch -> (samples served, names replaced)
        self.served = start - 1  # the last batch handed to DALI
        self.lock = threading.Lock()

    def rows(self, k: int) -> np.ndarray:
        b = self.loader.batch
        return self.order[k * b:(k + 1) * b]

    def _read(self, k: int) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
        ld = self.loader
        rows, data, bad = self.rows(k).copy(), [], []
        n = len(ld.view)
        for pos, i in enumerate(rows.tolist()):
            for step in range(n):  # the next readable sample replaces an unreadable one (data/unreadable.py)
                j = (i + step) % n
                buf = None if j in ld.bad else ld.checked_bytes(j)
                if buf is not None:
                    break
                bad.append(ld.view.name(j))
            else:
                raise DataError(f"none of the {n} training images can be read")
            rows[pos] = j
            data.append(np.frombuffer(buf, dtype=np.uint8))
        return data, rows, bad

    def __call__(self, info) -> list[np.ndarray]:
        k = self.start + info.iteration
        if k >= self.loader.steps:
            raise StopIteration
        with self.lock:
            for j in range(k, min(k + _LOOKAHEAD, self.loader.steps)):
                if j not in self.pending:
                    self.pending[j] = self.pool.submit(self._read, j)
            fut = self.pending.pop(k)
        data, rows, bad = fut.result()
        self.used[k] = (rows, bad)
        self.served = max(self.served, k)
        return data

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class DaliEpochLoader:
    """``data.loader: dali`` (module docstring): the :class:`~efficienttrain_ext.engine.loaders.EpochLoader`
    interface over an ImageFolder or tar shards. ``device``: ``data.dali_device`` (auto | cpu | mixed);
    ``workers``: DALI's CPU threads (at least 1)."""

    def __init__(self, dataset: Dataset, batch: int, info, *, workers: int, seed: int, pin_memory: bool,
                 device: str = "auto"):
        self._fn, self._pipeline_def, self._types, self._feed = _dali()
        self.view: EncodedView = encoded_view(dataset)
        self.batch, self.seed, self.rank = int(batch), int(seed), int(info.rank)
        self.device = decode_device(device, pin_memory)
        self.pin_memory = bool(pin_memory) and self.device == "cpu"  # CPU batches for a CUDA run: page-locked
        self.device_id = torch.cuda.current_device() if self.device == "mixed" else None
        self.threads = max(1, int(workers))
        self.sampler = GlobalBatchSampler(len(self.view), self.batch, info.world, info.rank, seed)
        self.steps = len(self.sampler)
        self.epoch = 0
        self.bad: set[int] = set()  # view indices known to be unreadable
        self.verified: set[int] = set()  # failed the marker check but PIL reads them
        self.rebuilds = 0  # pipelines built again after a decoder error (for tests and reports)

    # ----- EpochLoader

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.steps

    def order(self, epoch: int | None = None) -> np.ndarray:
        """This rank's sample order (view indices) in ``epoch`` (default: the current one)."""
        self.sampler.set_epoch(self.epoch if epoch is None else epoch)
        return np.fromiter((i for b in self.sampler for i in b), dtype=np.int64)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        epoch, order = self.epoch, self.order()
        k = 0
        while k < self.steps:
            pipe, source = self._build(order, k, epoch)
            try:
                while k < self.steps:
                    try:
                        (images,) = pipe.run()
                    except RuntimeError as e:  # DALI stops the pipeline at a decoder error
                        self._blame(source, k, e)
                        break
                    batch = self._batch(images, source, k)
                    k += 1
                    yield batch
            finally:
                source.close()
                del pipe

    # ----- reading and checking

    def checked_bytes(self, i: int) -> bytes | None:
        """The bytes of sample ``i``, or None when it cannot be read or decoded (recorded in ``bad``)."""
        try:
            buf = self.view.read(i)
        except OSError:
            self.bad.add(i)
            return None
        if i in self.verified or looks_complete(buf):
            return buf
        if pil_decodes(buf):
            self.verified.add(i)
            return buf
        self.bad.add(i)
        return None

    def _blame(self, source: _EpochSource, k: int, error: Exception) -> None:
        """Find the images of batches ``k ..`` in flight that stopped the decoder; raise if there are none."""
        candidates = [int(i) for j in range(k, source.served + 1)
                      for i in source.used.get(j, (source.rows(j),))[0] if int(i) not in self.bad]
        found = [i for i in candidates if not self._decodes(i, pil_decodes)]
        if not found:  # PIL reads them all: ask DALI about each
            found = [i for i in candidates if not self._decodes(i, self._dali_decodes)]
        if not found:
            raise DataError(f"DALI failed at batch {k} of epoch {self.epoch} and every image of the batches in "
                            f"flight decodes on its own; DALI said: {str(error).strip()[:2000]}") from error
        self.bad.update(found)
        self.rebuilds += 1

    def _decodes(self, i: int, decoder) -> bool:
        try:
            return decoder(self.view.read(i))
        except OSError:
            return False

    def _dali_decodes(self, buf: bytes) -> bool:
        fn, pipeline_def, types, _ = self._fn, self._pipeline_def, self._types, self._feed
        data = np.frombuffer(buf, dtype=np.uint8)

        @pipeline_def(batch_size=1, num_threads=1, device_id=self.device_id, prefetch_queue_depth=1)
        def one():
            enc = fn.external_source(source=lambda: [data], batch=True, dtype=types.UINT8, ndim=1)
            return fn.decoders.image(enc, device=self.device, output_type=types.RGB)

        pipe = one()
        try:
            pipe.build()
            pipe.run()
        except RuntimeError:
            return False
        finally:
            del pipe
        return True

    # ----- the DALI graph

    def _build(self, order: np.ndarray, start: int, epoch: int):
        fn, pipeline_def, types = self._fn, self._pipeline_def, self._types
        crop = self.view.crop
        source = _EpochSource(self, order, start)
        interp = types.INTERP_CUBIC if crop.interpolation == "bicubic" else types.INTERP_LINEAR

        @pipeline_def(batch_size=self.batch, num_threads=self.threads, device_id=self.device_id,
                      seed=_seed(self.seed, epoch, self.rank, start), prefetch_queue_depth=2)
        def graph():
            enc = fn.external_source(source=source, batch=True, batch_info=True, dtype=types.UINT8, ndim=1)
            img = fn.decoders.image(enc, device=self.device, output_type=types.RGB)
            img = fn.random_resized_crop(img, size=(crop.size, crop.size), random_area=list(crop.scale),
                                         random_aspect_ratio=list(crop.ratio), num_attempts=10, interp_type=interp,
                                         antialias=True)
            mirror = fn.random.coin_flip(probability=crop.hflip) if crop.hflip > 0 else 0
            return fn.crop_mirror_normalize(img, dtype=types.UINT8, output_layout="CHW", mirror=mirror)

        pipe = graph()
        try:
            pipe.build()
        except BaseException:
            source.close()
            raise
        return pipe, source

    def _batch(self, images, source: _EpochSource, k: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        t = images.as_tensor()
        if self.device == "mixed":
            x = torch.empty(t.shape(), dtype=torch.uint8, device=torch.device("cuda", self.device_id))
            self._feed(t, x, cuda_stream=torch.cuda.current_stream(x.device))
        else:
            x = torch.empty(t.shape(), dtype=torch.uint8, pin_memory=self.pin_memory)
            self._feed(t, x)
        rows, bad = source.used.pop(k)
        return x, torch.from_numpy(self.view.targets[rows]), bad
