"""Webdataset-style tar shards (``data.dataset: wds``): writing them from an ImageFolder, and reading them.

Layout (what :func:`write_shards` / ``etrain shards`` writes; the ``webdataset`` package and DALI's
``fn.readers.webdataset`` read it too): a sample is consecutive tar members ``KEY.jpg`` (the image file's own
bytes, not re-encoded; ``.png`` etc. keep their extension) and ``KEY.cls`` (the class index in ASCII); the
``classes.json`` next to the shards names the classes in index order (ImageFolder's sorted class folders);
each ``NAME.tar`` has an index ``NAME.idx`` in DALI's ``wds2idx`` format (v1.2: per sample, ``ext offset size
member`` for each component) and a sample table ``NAME.samples.npy`` (image offset, size, label), written with
the shard and rebuilt (by a scan) when missing or older than the tar.

:class:`TarShardDataset` reads the shards with random access (a map-style dataset over memory-mapped tars),
not as a stream: the trainer needs ``len(dataset)`` and exactly ``steps_per_epoch`` batches on every rank, a
``DistributedSampler`` then gives disjoint, covering rank shards with a global per-epoch permutation (the same
order as for an ImageFolder), and a resumed epoch reads the same samples. Streaming readers split shards over
ranks and workers and give each rank a data-dependent number of samples.
"""

from __future__ import annotations

import io
import json
import mmap
import os
import random
import tarfile
import time
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from tqdm import tqdm

from ..errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "CLASSES_FILE", "expand_shards", "index_path", "scan_tar", "read_index",
           "write_index", "table_path", "sample_table", "TarShardDataset", "write_shards"]

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "ppm", "pgm", "tif", "tiff")
CLASSES_FILE = "classes.json"
_INDEX_VERSION = "v1.2"

Component = tuple[str, int, int, str]  # (extension, data offset, size, member name)


def expand_shards(pattern: str) -> list[str]:
    """The shard files of a brace pattern (``/data/train-{000000..000009}.tar``; ``{a,b}`` lists work too),
    each checked to exist."""
    try:
        from braceexpand import braceexpand  # installed with webdataset
    except ImportError as e:
        raise DataError("data.dataset=wds needs the webdataset package (pip install webdataset, or "
                        "pip install -e .[data])") from e
    paths = [os.path.expanduser(p) for p in braceexpand(pattern)]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(f"shard pattern {pattern!r}: {len(missing)} of {len(paths)} files do not exist "
                        f"(first: {missing[0]}); write shards with 'etrain shards IMAGEFOLDER OUT_DIR'")
    return paths


def index_path(tar_path: str) -> str:
    """``NAME.tar`` -> ``NAME.idx`` (where DALI's wds2idx puts it by default)."""
    return os.path.splitext(tar_path)[0] + ".idx"


def _split_name(member: str) -> tuple[str, str]:
    # webdataset's convention: the key is the path up to the first dot of the file name
    dot = member.find(".", member.rfind("/") + 1)
    return (member, "") if dot < 0 else (member[:dot], member[dot + 1:])


def scan_tar(path: str) -> list[list[Component]]:
    """The samples of a tar: its regular-file members grouped by key (consecutive members with the same key)."""
    samples: list[list[Component]] = []
    last = None
    try:
        with tarfile.open(path, "r:") as tar:
            for m in tar:
                if not m.isreg():
                    continue
                key, ext = _split_name(m.name)
                if not key or key.endswith("/") or not ext:
                    continue
                if key != last:
                    samples.append([])
                    last = key
                samples[-1].append((ext, m.offset_data, m.size, m.name))
    except (OSError, tarfile.TarError) as e:
        raise DataError(f"cannot read tar shard {path}: {e}") from e
    return samples


def write_index(path: str, samples: list[list[Component]]) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{_INDEX_VERSION} {len(samples)}\n")
        for s in samples:
            f.write(" ".join(f"{ext} {off} {size} {name}" for ext, off, size, name in s) + "\n")
    os.replace(tmp, path)


def read_index(path: str) -> list[list[Component]]:
    """A wds2idx v1.2 index (member names must not contain spaces, as in DALI's reader)."""
    with open(path) as f:
        head = f.readline().split()
        if len(head) != 2 or head[0] != _INDEX_VERSION:
            raise DataError(f"{path} is not a {_INDEX_VERSION} webdataset index (first line {' '.join(head)!r})")
        samples = []
        for line in f:
            parts = line.split()
            if len(parts) % 4:
                raise DataError(f"{path}: malformed index line {line.strip()!r}")
            samples.append([(parts[i], int(parts[i + 1]), int(parts[i + 2]), parts[i + 3])
                            for i in range(0, len(parts), 4)])
    if len(samples) != int(head[1]):
        raise DataError(f"{path}: header says {head[1]} samples, the index lists {len(samples)}")
    return samples


def _load_index(tar_path: str) -> list[list[Component]]:
    idx = index_path(tar_path)
    if os.path.isfile(idx) and os.path.getmtime(idx) >= os.path.getmtime(tar_path):
        return read_index(idx)
    samples = scan_tar(tar_path)
    try:  # keep it for the next run; a read-only data folder just costs a scan per run
        write_index(idx, samples)
    except OSError:
        pass
    return samples


def table_path(tar_path: str) -> str:
    """``NAME.tar`` -> ``NAME.samples.npy``: the sample table (image offset, size, label) of a shard."""
    return os.path.splitext(tar_path)[0] + ".samples.npy"


_TABLE = np.dtype([("offset", "<i8"), ("size", "<i4"), ("target", "<i8")])


def sample_table(tar_path: str) -> np.ndarray:
    """Each sample's image member (offset, size) and label, from the index and the ``.cls`` members. Cached in
    :func:`table_path` (when the folder is writable): a run over 13M samples then starts by loading arrays instead
    of parsing indexes and reading millions of labels."""
    cache = table_path(tar_path)
    if os.path.isfile(cache) and os.path.getmtime(cache) >= os.path.getmtime(tar_path):
        try:
            table = np.load(cache, allow_pickle=False)
            if table.dtype == _TABLE:
                return table
        except (OSError, ValueError):
            pass  # rebuilt below
    samples = _load_index(tar_path)
    table = np.empty(len(samples), dtype=_TABLE)
    with open(tar_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for n, comps in enumerate(samples):
            by_ext = {ext.lower(): (off, size) for ext, off, size, _ in comps}
            image = next((by_ext[e] for e in IMAGE_EXTENSIONS if e in by_ext), None)
            key = _split_name(comps[0][3])[0]
            if image is None or "cls" not in by_ext:
                raise DataError(f"{tar_path}: sample {key!r} needs an image ({'/'.join(IMAGE_EXTENSIONS)}) and a "
                                f".cls label, it has {sorted(by_ext)}")
            off, size = by_ext["cls"]
            try:
                target = int(mm[off:off + size].decode("ascii").strip())
            except ValueError:
                raise DataError(f"{tar_path}: sample {key!r} has a .cls that is not an integer") from None
            table[n] = (image[0], image[1], target)
    try:
        tmp = f"{cache}.tmp{os.getpid()}.npy"
        np.save(tmp, table)
        os.replace(tmp, cache)
    except OSError:
        pass
    return table


def _classes_next_to(shard: str, num_labels: int) -> list[str]:
    path = os.path.join(os.path.dirname(os.path.abspath(shard)), CLASSES_FILE)
    if not os.path.isfile(path):
        return [str(i) for i in range(num_labels)]
    try:
        with open(path) as f:
            classes = json.load(f)["classes"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path} must be JSON {{\"classes\": [names in index order]}}: {e}") from e
    if len(classes) < num_labels:
        raise DataError(f"{path} names {len(classes)} classes but the shards use labels up to {num_labels - 1}")
    return list(classes)


class TarShardDataset(Dataset):
    """Samples of webdataset tar shards as ``(image, target, name)`` like SafeImageFolder, with ``(None,
    target, name)`` for an image that cannot be decoded. ``name`` is ``SHARD.tar:KEY``."""

    def __init__(self, shards: Sequence[str], transform: Callable | None = None):
        if not shards:
            raise DataError("no tar shards given")
        self.shards = [os.path.abspath(s) for s in shards]
        self.transform = transform
        tables = [sample_table(p) for p in self.shards]
        table = np.concatenate(tables)
        if len(table) == 0:
            raise DataError(f"no samples in the shards {self.shards[0]} ...")
        if table["target"].min() < 0:
            raise DataError(f"negative class labels in the shards {self.shards[0]} ...")
        self._shard = np.repeat(np.arange(len(tables), dtype=np.int32), [len(t) for t in tables])
        self._offset = np.ascontiguousarray(table["offset"])
        self._size = np.ascontiguousarray(table["size"])
        self.targets = np.ascontiguousarray(table["target"])  # an array: 13M Python ints would cost ~0.5 GB
        self.classes = _classes_next_to(self.shards[0], int(self.targets.max()) + 1)
        self._maps: dict[int, mmap.mmap] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.targets)

    def __getstate__(self):  # memory maps do not pickle (spawned workers map the files again)
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state

    def _map(self, sid: int) -> mmap.mmap:
        if self._pid != os.getpid():  # a forked worker maps its own
            self._maps, self._pid = {}, os.getpid()
        mm = self._maps.get(sid)
        if mm is None:
            with open(self.shards[sid], "rb") as f:
                mm = self._maps[sid] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return mm

    def encoded(self, i: int) -> bytes:
        """The image member's bytes, undecoded."""
        off, size = int(self._offset[i]), int(self._size[i])
        return self._map(int(self._shard[i]))[off:off + size]

    def sample_name(self, i: int) -> str:
        off = int(self._offset[i])
        header = self._map(int(self._shard[i]))[off - 512:off]  # the member's ustar header precedes its data
        member = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        return f"{self.shards[int(self._shard[i])]}:{_split_name(member)[0] or off}"

    def __getitem__(self, i: int):
        try:
            img = Image.open(io.BytesIO(self.encoded(i))).convert("RGB")
        except Exception:  # any decoder failure, as SafeImageFolder
            return None, int(self.targets[i]), self.sample_name(i)
        return (self.transform(img) if self.transform else img), int(self.targets[i]), self.sample_name(i)


def _index_written_shard(path: str) -> None:
    write_index(index_path(path), scan_tar(path))
    sample_table(path)


def write_shards(root: str, out_dir: str, shard_size: int = 1000, *, seed: int | None = 0,
                 splits: Sequence[str] = ("train", "val"), overwrite: bool = False,
                 progress: bool = True) -> dict[str, str]:
    """Write the ImageFolder ``root`` (``train/<class>/...``, ``val/<class>/...``; a root without split folders
    is written as ``train``) as shards ``OUT_DIR/<split>-NNNNNN.tar`` of ``shard_size`` samples with their
    indexes and ``classes.json``. Samples are written in an order shuffled with ``seed`` (None keeps the folder
    order) so streaming readers see mixed classes. Returns the brace pattern of each split written."""
    try:
        import webdataset as wds
    except ImportError as e:
        raise DataError("writing shards needs the webdataset package (pip install webdataset, or "
                        "pip install -e .[data])") from e
    if shard_size < 1:
        raise DataError(f"--shard-size must be >= 1, got {shard_size}")
    if not os.path.isdir(root):
        raise DataError(f"image folder {root} does not exist")
    present = [s for s in splits if os.path.isdir(os.path.join(root, s))]
    dirs = {s: os.path.join(root, s) for s in present} or {"train": root}
    classes = None
    os.makedirs(out_dir, exist_ok=True)
    written: dict[str, str] = {}
    for split, folder in dirs.items():
        try:
            split_classes, to_index = find_classes(folder)
            samples = make_dataset(folder, to_index, extensions=IMG_EXTENSIONS)
        except (FileNotFoundError, RuntimeError) as e:
            raise DataError(f"no images found in {folder}: {e}") from e
        if classes is not None and split_classes != classes:
            raise DataError(f"{folder}: classes {split_classes} differ from those of {list(dirs)[0]}/ {classes}")
        classes = split_classes
        old = [f for f in os.listdir(out_dir)
               if f.startswith(f"{split}-") and f.endswith((".tar", ".idx", ".samples.npy"))]
        if old and not overwrite:
            raise DataError(f"{out_dir} already holds {split} shards ({old[0]}, ...); pass --overwrite to replace "
                            "them or choose another output folder")
        for f in old:
            os.unlink(os.path.join(out_dir, f))
        if seed is not None:
            random.Random(seed).shuffle(samples)
        pattern = os.path.join(out_dir, f"{split}-%06d.tar")
        # an integer mtime keeps the headers plain ustar (a float one adds a PAX header to every member)
        with wds.ShardWriter(pattern, maxcount=shard_size, verbose=0, mtime=int(time.time()),
                             post=_index_written_shard) as sink:
            for n, (path, target) in enumerate(tqdm(samples, desc=f"shards {split}", disable=not progress,
                                                    unit="img", mininterval=1.0)):
                ext = os.path.splitext(path)[1].lower().lstrip(".") or "jpg"
                with open(path, "rb") as f:
                    sink.write({"__key__": f"{n:09d}", ext: f.read(), "cls": int(target)})
        count = (len(samples) + shard_size - 1) // shard_size
        written[split] = os.path.join(out_dir, f"{split}-{{{0:06d}..{count - 1:06d}}}.tar")
    with open(os.path.join(out_dir, CLASSES_FILE), "w") as f:
        json.dump({"classes": classes}, f, indent=1)
    return written
