"""Checkpoints: atomic writes, an integrity digest, and the RNG state capture that makes resume exact.

A checkpoint is written through :func:`~efficienttrain_ext.engine.atomic.write_atomic`, so a process killed while
writing leaves the previous checkpoint (or none), never a torn file. It carries a SHA-256 digest of its content
(every tensor's bytes, dtype and shape, and every other value), checked on load: a truncated or corrupted file
raises :class:`~efficienttrain_ext.errors.CheckpointError` instead of loading. Everything stored is a tensor or a
plain Python value, so files also load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
from typing import Any, Mapping

import numpy as np
import torch

from ..config import with_legacy_defaults
from ..errors import CheckpointError
from .atomic import write_atomic

__all__ = ["CheckpointError", "save_atomic", "load", "is_checkpoint", "verified", "rng_state", "set_rng_state", "fingerprint", "digest", "FORMAT"]

FORMAT = "etrain-checkpoint-v1"


def _feed(h, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, Mapping):
        h.update(f"D{len(obj)}".encode())
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode())
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for v in obj:
            _feed(h, v)
    else:
        h.update(f"V{obj!r}".encode())


def digest(obj: Any) -> str:
    """SHA-256 of a checkpoint's content (independent of how torch.save lays it out)."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def save_atomic(obj: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write ``obj`` (with its digest under ``"digest"``) to ``path`` atomically."""
    state = {k: v for k, v in obj.items() if k != "digest"}
    state["digest"] = digest(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(path, lambda f: f.write(buf.getbuffer()))


def load(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint file (or a run directory's ``last.pt``), verified against its digest."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "last.pt")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, not a torch file, unpickling refused, ...
        raise CheckpointError(f"cannot read checkpoint {path} (truncated or corrupt?): {e}") from e
    ckpt = verified(ckpt, path)
    if isinstance(ckpt.get("config"), dict):  # a run started by an older version continues as it started
        ckpt["config"] = with_legacy_defaults(ckpt["config"])
    return ckpt


def is_checkpoint(obj: Any) -> bool:
    """Whether a loaded object is an etrain checkpoint (not yet verified)."""
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def verified(ckpt: Any, path: str = "checkpoint") -> dict[str, Any]:
    """A loaded etrain checkpoint checked against its digest (the digest entry removed)."""
    if not is_checkpoint(ckpt):
        raise CheckpointError(f"{path} is not an etrain checkpoint ({FORMAT})")
    stored = ckpt.pop("digest", None)
    if stored is None or digest(ckpt) != stored:
        raise CheckpointError(f"checkpoint {path} is corrupt: its content does not match its digest")
    return ckpt


def rng_state() -> dict[str, Any]:
    """All global RNG streams the training step draws from (torch CPU/CUDA, NumPy, Python)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def fingerprint(config: Mapping[str, Any]) -> str:
    """Stable hash of the configuration entries that define the training trajectory."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
