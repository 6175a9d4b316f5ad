"""Per-epoch metrics files: ``metrics.jsonl`` and ``metrics.csv`` (optionally TensorBoard scalars).

Both files are replaced atomically at every epoch (:mod:`.atomic`), so a process killed at any moment leaves them
complete: as they were after some epoch, never half a line.
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any, Mapping

from ..errors import TrainError
from .atomic import write_text_atomic

__all__ = ["MetricsLog", "read_metrics", "METRICS_JSONL", "METRICS_CSV"]

METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"


def read_metrics(run_dir: str) -> list[dict[str, Any]]:
    path = os.path.join(run_dir, METRICS_JSONL)
    if not os.path.isfile(path):
        raise TrainError(f"{run_dir} has no {METRICS_JSONL} (not a training run directory?)")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class MetricsLog:
    """Appends one row per epoch. On resume, rows past the checkpoint's epoch (written by the interrupted run
    after its last checkpoint) are dropped so the files match an uninterrupted run."""

    def __init__(self, run_dir: str, keep_epochs: int = 0, tensorboard: bool = False):
        self.run_dir = run_dir
        self.rows = [r for r in self._existing() if r["epoch"] <= keep_epochs] if keep_epochs else []
        self._rewrite()
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional dependency
            except ImportError as e:
                raise TrainError("train.tensorboard=true needs the tensorboard package") from e
            self._tb = SummaryWriter(os.path.join(run_dir, "tb"))

    def _existing(self) -> list[dict[str, Any]]:
        try:
            return read_metrics(self.run_dir)
        except FileNotFoundError:
            return []

    def _rewrite(self) -> None:
        write_text_atomic(os.path.join(self.run_dir, METRICS_JSONL), "".join(json.dumps(r) + "\n" for r in self.rows))
        keys: list[str] = []
        for r in self.rows:  # columns can appear later (e.g. top1_at_B)
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self.rows)
        write_text_atomic(os.path.join(self.run_dir, METRICS_CSV), buf.getvalue())

    def append(self, row: Mapping[str, Any]) -> None:
        self.rows.append(dict(row))
        self._rewrite()
        if self._tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    self._tb.add_scalar(k, v, row["epoch"])
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
