"""Datasets shipped as one tar archive (``--data-root data.tar.gz``): unpacked once into the cache directory.

The cache is ``$ETRAIN_CACHE`` (default ``${XDG_CACHE_HOME:-~/.cache}/efficienttrain_ext``, as
scripts/install_detection.sh uses), ``data/<archive name>-<sha256 prefix>/``. The archive is unpacked into a
temporary folder beside that and renamed into place, so ranks or runs that start together never see a half-written
tree: the first rename wins and the others drop their copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zlib

from ..errors import DataError

__all__ = ["ARCHIVE_SUFFIXES", "cache_root", "is_archive", "unpack_archive", "data_root"]

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def cache_root() -> str:
    """``$ETRAIN_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/efficienttrain_ext``."""
    root = os.environ.get("ETRAIN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "efficienttrain_ext")
    return os.path.abspath(root)


def is_archive(path: str) -> bool:
    return os.path.isfile(path) and path.endswith(ARCHIVE_SUFFIXES)


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _check_read_to_the_end(tar: tarfile.TarFile) -> None:
    """Raise if ``tar`` stopped before its end. tarfile takes a damaged member header after the first for the end of
    the archive (so a corrupt archive would unpack cut short, silently), and gzip checks its CRC only at the end of
    the stream: past the last member read there must be nothing but the zero blocks that close an archive."""
    f = tar.fileobj
    f.seek(tar.offset)
    at = tar.offset
    for block in iter(lambda: f.read(1 << 20), b""):
        if block.strip(b"\0"):
            raise tarfile.ReadError(f"damaged member header at byte {at} of the tar stream (the archive is corrupt "
                                    f"or cut short; {len(tar.getmembers())} members read before it)")
        at += len(block)


def unpack_archive(path: str, cache: str | None = None) -> str:
    """The folder holding ``path``'s contents, unpacked on first use (atomically; see the module docstring)."""
    if not os.path.isfile(path):
        raise DataError(f"archive {path} does not exist")
    name = os.path.basename(path)
    for suffix in ARCHIVE_SUFFIXES:
        name = name.removesuffix(suffix)
    parent = os.path.join(cache or cache_root(), "data")
    try:
        key = _digest(path)  # the content, not the path: a changed archive unpacks afresh
        dest = os.path.join(parent, f"{name}-{key}")
        if os.path.isdir(dest):
            return dest
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{name}-", dir=parent)
    except OSError as e:
        raise DataError(f"cannot unpack {path} into the cache {parent} (set ETRAIN_CACHE to a writable folder): "
                        f"{e}") from e
    try:
        print(f"data: unpacking {path} into {dest} (once)", flush=True)
        with tarfile.open(path) as tar:
            tar.extractall(tmp, filter="data")  # 'data': no absolute paths, links out of the tree or devices
            _check_read_to_the_end(tar)
        os.rename(tmp, dest)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if os.path.isdir(dest):  # another process renamed its copy first
            return dest
        raise DataError(f"cannot unpack {path}: {e}") from e
    return dest


def data_root(root: str, cache: str | None = None) -> str:
    """``root``, or for an archive the folder it unpacks to; a tree whose only entry is one folder (e.g.
    ``flowers/train``, ``flowers/val``) stands for that folder."""
    if not is_archive(root):
        return root
    out = unpack_archive(root, cache)
    entries = [e for e in os.listdir(out) if not e.startswith(".")]
    if len(entries) == 1 and os.path.isdir(os.path.join(out, entries[0])):
        out = os.path.join(out, entries[0])
    return out
