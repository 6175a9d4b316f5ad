"""Searched curricula: a greedy, stage-by-stage search for the smallest input sizes that cost no accuracy.

EfficientTrain picks its stage sizes by search rather than by hand: the run is split into ``stages`` equal parts
and, from the first stage to the last but one, each stage gets the smallest candidate size B whose short proxy
training still reaches the baseline's accuracy (all stages at the final size) within ``tolerance``; the stages
after the one being searched stay at the final size, the stages before it keep what was chosen, and sizes never
shrink from one stage to the next (easier inputs first). The last stage is always the final size. A stage for
which no candidate qualifies keeps the final size, and so do all stages after it (the sizes cannot shrink again).
Every distinct size list is trained once (at most ``1 + (stages - 1) * len(candidates)`` proxy runs).

:func:`greedy_search` is the algorithm on any ``evaluate(sizes) -> accuracy`` function; :func:`run_search` (the
``etrain search`` command) evaluates with real proxy runs of the driver, writes ``search.csv`` / ``search.json`` /
``search.png`` and ``best_schedule.yaml``, a schedule file that ``etrain train --curriculum`` takes, and reuses
finished trial runs when a search is started again in the same directory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..errors import SearchError

__all__ = ["Trial", "SearchResult", "check_search_args", "greedy_search", "schedule_spec"]


@dataclass
class Trial:
    """One evaluated size list. ``stage``: the stage being searched (-1: the baseline)."""

    sizes: tuple[int, ...]
    accuracy: float
    stage: int
    accepted: bool = False
    cost: float | None = None  # predicted compute relative to the baseline, when the evaluator reports it


@dataclass
class SearchResult:
    sizes: tuple[int, ...]
    accuracy: float
    baseline_accuracy: float
    tolerance: float
    trials: list[Trial] = field(default_factory=list)


def check_search_args(candidates: Sequence[int], stages: int, final_size: int, tolerance: float) -> list[int]:
    """The sorted distinct candidates; SearchError (a ValueError) for anything the search cannot run with."""
    if isinstance(stages, bool) or not isinstance(stages, int) or stages < 2:
        raise SearchError(f"stages must be an integer >= 2, got {stages!r}")
    if not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) or tolerance < 0:
        raise SearchError(f"tolerance must be a finite number >= 0 (accuracy points), got {tolerance!r}")
    sizes = sorted({int(c) for c in candidates})
    if not sizes:
        raise SearchError("candidates: give at least one size below the final size")
    bad = [c for c in sizes if c < 1 or c >= final_size]
    if bad:
        raise SearchError(f"candidates must lie in [1, final size {final_size}), got {bad}")
    return sizes


def greedy_search(evaluate: Callable[[tuple[int, ...]], float | tuple[float, float]], candidates: Sequence[int],
                  stages: int, final_size: int, tolerance: float = 0.0,
                  on_trial: Callable[[Trial], None] | None = None) -> SearchResult:
    """Run the greedy search (module docstring). ``evaluate(sizes)`` returns the accuracy of a proxy run with those
    per-stage sizes, or ``(accuracy, predicted_cost)``; ``on_trial`` is called after every evaluation."""
    cands = check_search_args(candidates, stages, final_size, tolerance)
    trials: dict[tuple[int, ...], Trial] = {}

    def run(sizes: tuple[int, ...], stage: int) -> Trial:
        if sizes not in trials:
            out = evaluate(sizes)
            acc, cost = (out if isinstance(out, tuple) else (out, None))
            trials[sizes] = Trial(sizes, float(acc), stage, cost=None if cost is None else float(cost))
            if on_trial is not None:
                on_trial(trials[sizes])
        return trials[sizes]

    base = run((final_size,) * stages, -1)
    threshold = base.accuracy - tolerance
    chosen: list[int] = []
    for i in range(stages - 1):
        pick = final_size
        for b in (c for c in cands if not chosen or c >= chosen[-1]):
            t = run(tuple(chosen + [b] + [final_size] * (stages - i - 1)), i)
            if t.accuracy >= threshold:
                t.accepted = True
                pick = b
                break
        chosen.append(pick)
        if pick == final_size:  # sizes never shrink again: the remaining stages stay at the final size
            chosen += [final_size] * (stages - 2 - i)
            break
    best = tuple(chosen + [final_size])
    return SearchResult(best, trials[best].accuracy, base.accuracy, float(tolerance), list(trials.values()))


def schedule_spec(sizes: Sequence[int], name: str = "searched") -> dict[str, Any]:
    """A YAML schedule (``curriculum.schedule_from_yaml``) with equal stages at ``sizes``."""
    n = len(sizes)
    return {"name": name, "magnitude": "linear",
            "stages": [{"fraction": 1.0 / n, "size": int(s)} for s in sizes]}
