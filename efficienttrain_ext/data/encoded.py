"""Training samples still encoded (JPEG/PNG bytes), for loaders that decode them themselves (``data.loader: dali``).

:func:`encoded_view` turns the training dataset the trainer holds (an ImageFolder or tar shards, possibly inside
``Subset`` s for ``train_subset`` / ``val_split``) into a flat view of bytes, targets and names, with the crop
settings of the dataset's own transform, so the decoding loader reads the same samples and crops the same way
as the torch loader would.

:func:`readable` decides whether bytes can be given to a decoder that stops the whole pipeline on a bad image: a
JPEG or PNG that starts and ends with its markers passes at once (the cost is a few byte compares); anything
else is tried with PIL, the decoder whose verdict the torch loader follows.
"""

from __future__ import annotations

import io
from typing import Protocol, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset, Subset

from ..errors import DataError
from .transforms import TrainCrop, TrainTransform

__all__ = ["EncodedDataset", "EncodedView", "encoded_view", "looks_complete", "pil_decodes", "readable"]

_JPEG_SOI, _JPEG_EOI = b"\xff\xd8\xff", b"\xff\xd9"
_PNG_SIGNATURE, _PNG_IEND = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


class EncodedDataset(Protocol):
    """A dataset whose samples can also be read undecoded (SafeImageFolder, TarShardDataset)."""

    targets: Sequence[int]
    transform: object

    def encoded(self, i: int) -> bytes: ...

    def sample_name(self, i: int) -> str: ...


class EncodedView:
    """Samples ``indices`` of ``base`` as bytes, targets and names (index ``k`` of the view is ``indices[k]``)."""

    def __init__(self, base: EncodedDataset, indices: np.ndarray, crop: TrainCrop):
        self.base, self.indices, self.crop = base, indices, crop
        self.targets = np.asarray(base.targets, dtype=np.int64)[indices]

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, k: int) -> bytes:
        """The encoded bytes of sample ``k`` (OSError when they cannot be read)."""
        return self.base.encoded(int(self.indices[k]))

    def name(self, k: int) -> str:
        return self.base.sample_name(int(self.indices[k]))


def encoded_view(dataset: Dataset) -> EncodedView:
    """The training set as encoded samples; a DataError for a dataset that is not stored as image files."""
    indices: np.ndarray | None = None
    while isinstance(dataset, Subset):  # innermost indices first: compose them from the outside in
        sub = np.asarray(dataset.indices, dtype=np.int64)
        indices = sub if indices is None else sub[indices]
        dataset = dataset.dataset
    if not callable(getattr(dataset, "encoded", None)):
        raise DataError(f"data.loader=dali decodes image files itself, but the training set is a "
                        f"{type(dataset).__name__}; use an ImageFolder (data.dataset=imagefolder) or tar shards "
                        "(data.dataset=wds), or data.loader=torch")
    transform = getattr(dataset, "transform", None)
    if not isinstance(transform, TrainTransform):
        raise DataError(f"the training set's transform is {type(transform).__name__}, not the training crop "
                        "(data.transforms.train_transform): the decoding loader cannot tell how to crop")
    if indices is None:
        indices = np.arange(len(dataset), dtype=np.int64)
    return EncodedView(dataset, indices, transform.crop)


def looks_complete(buf: bytes) -> bool:
    """Whether ``buf`` is a JPEG that starts with SOI and ends with EOI (trailing zero padding allowed), or a PNG
    that starts with its signature and ends with the IEND chunk. False for anything else, including other
    formats: the caller then asks PIL."""
    if buf.startswith(_JPEG_SOI):
        return buf[-1024:].rstrip(b"\x00").endswith(_JPEG_EOI)  # the tail only: no copy of the whole file
    if buf.startswith(_PNG_SIGNATURE):
        return buf.endswith(_PNG_IEND)
    return False


def pil_decodes(buf: bytes) -> bool:
    """Whether PIL decodes ``buf`` to RGB (what SafeImageFolder does with a file)."""
    try:
        with Image.open(io.BytesIO(buf)) as img:
            img.convert("RGB")
    except Exception:  # any decoder failure (truncated, not an image, unsupported)
        return False
    return True


def readable(buf: bytes) -> bool:
    """Whether ``buf`` may be given to the decoder: complete JPEG/PNG markers, or else PIL decodes it."""
    return looks_complete(buf) or pil_decodes(buf)
