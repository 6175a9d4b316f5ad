"""Searched curricula: the stage sizes of EfficientTrain (Algorithm 1) and EfficientTrain++ found by proxy trainings.

Every search works on an ``evaluate(sizes) -> accuracy`` function (a short proxy training with those per-stage input
sizes, or anything else) and trains each distinct size list once. ``evaluate`` may return a number or a
:class:`Measurement` (mean and spread over seeds, predicted compute); the searches rank by the mean.

:func:`search_et`: EfficientTrain's Algorithm 1, as published. ``stages`` = N stages of equal length, baseline
accuracy a0 with every stage at the final size v::

    B_1 = ... = B_N = v
    for i = N-1 down to 1:
        B_i = min B  such that  accuracy(B_1..B_N) >= a0 - tolerance,
              where B_1 = ... = B_i = B and B_{i+1..N} keep their values

Each step ties the whole prefix 1..i to one size and lowers it. The minimisation is a linear search down the
candidates below the current B_{i+1}, largest first, that stops at the first size failing the threshold (the
prefix then keeps the last size that passed; the current one passed already). With the paper's Table 5 result this
is 7 trainings for N = 5.

:func:`search_forward`: the forward variant (earlier versions of ``etrain search``): from stage 1 to N-1, each stage
alone gets the smallest candidate that passes, the stages before it keep what was chosen and the stages after it
stay at v; a stage where nothing passes ends the search. The two orders can choose different schedules for the
same accuracy function (forward spends the accuracy margin on stage 1 first).

:func:`search_etpp`: EfficientTrain++'s computation-constrained sequential search (defined here; the paper's text
was not available): the budget is C final-size epochs in N stages of equal compute, a stage at size B running
C/N / c(B) epochs with c(B) = (B/v)^2 (or a measured FLOP ratio). For k = 1 .. N-1, with B_1..B_{k-1} chosen and the
later stages at v, every candidate B >= B_{k-1} (v included) is trained for stage k within the same budget and the
most accurate is kept (ties go to the smaller B); choosing v ends the search. Every trial costs the same, so this
maximises accuracy at a fixed budget, where Algorithm 1 minimises cost at a fixed accuracy.
"""

from __future__ import annotations

import math
import numbers
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..errors import SearchError

__all__ = ["Measurement", "Trial", "SearchResult", "ALGORITHMS", "check_search_args", "check_budget", "search_et",
           "search_forward", "search_etpp", "etpp_stage_epochs", "schedule_spec", "etpp_schedule_spec"]

ALGORITHMS = ("et", "forward", "etpp")


@dataclass(frozen=True)
class Measurement:
    """What one evaluation found: ``accuracy`` (the mean over ``accuracies``, one per seed, when given), ``std``
    (their sample standard deviation; 0 for one seed) and ``cost`` (predicted compute vs the baseline, if known)."""

    accuracy: float
    std: float = 0.0
    accuracies: tuple[float, ...] = ()
    cost: float | None = None

    @classmethod
    def of_seeds(cls, accuracies: Sequence[float], cost: float | None = None) -> "Measurement":
        accs = tuple(float(a) for a in accuracies)
        if not accs:
            raise SearchError("a measurement needs at least one accuracy")
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        return cls(statistics.fmean(accs), std, accs, cost)


@dataclass
class Trial:
    """One evaluated size list. ``stage``: the (0-based) stage being searched, -1 for Algorithm 1's baseline;
    ``accepted``: it passed the threshold (et, forward) or won its stage (etpp); ``epochs``: per-stage epochs (etpp)."""

    sizes: tuple[int, ...]
    accuracy: float
    stage: int
    accepted: bool = False
    cost: float | None = None
    std: float = 0.0
    accuracies: tuple[float, ...] = ()
    epochs: tuple[float, ...] | None = None


@dataclass
class SearchResult:
    """The chosen ``sizes`` with their trial's accuracy; ``trials`` in the order they were evaluated.
    ``baseline_accuracy``: every stage at the final size (for etpp: at the budget). ``tolerance``: et/forward only;
    ``epochs`` (per stage of ``sizes``) and ``budget``: etpp only."""

    algorithm: str
    sizes: tuple[int, ...]
    accuracy: float
    baseline_accuracy: float
    trials: list[Trial] = field(default_factory=list)
    tolerance: float | None = None
    epochs: tuple[float, ...] | None = None
    budget: float | None = None

    @property
    def best(self) -> Trial:
        return next(t for t in self.trials if t.sizes == self.sizes)


Evaluate = Callable[[tuple[int, ...]], "float | Measurement"]


def check_search_args(candidates: Sequence[int], stages: int, final_size: int, tolerance: float = 0.0) -> list[int]:
    """The sorted distinct candidates; SearchError (a ValueError) for anything the search cannot run with."""
    if isinstance(stages, bool) or not isinstance(stages, int) or stages < 2:
        raise SearchError(f"stages must be an integer >= 2, got {stages!r}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or tolerance < 0:
        raise SearchError(f"tolerance must be a finite number >= 0 (accuracy points), got {tolerance!r}")
    if isinstance(final_size, bool) or not isinstance(final_size, numbers.Integral) or final_size < 2:
        raise SearchError(f"final size must be an integer >= 2, got {final_size!r}")
    if any(isinstance(c, bool) or not isinstance(c, numbers.Integral) for c in candidates):
        raise SearchError(f"candidates must be integers, got {list(candidates)!r}")
    sizes = sorted({int(c) for c in candidates})
    if not sizes:
        raise SearchError("candidates: give at least one size below the final size")
    bad = [c for c in sizes if c < 1 or c >= final_size]
    if bad:
        raise SearchError(f"candidates must lie in [1, final size {final_size}), got {bad}")
    return sizes


def check_budget(epochs: float, stages: int, whole_epochs: bool = False) -> float:
    """The budget C in final-size epochs; with ``whole_epochs`` every stage needs C/N >= 1 final-size epoch."""
    if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or not math.isfinite(epochs) or epochs <= 0:
        raise SearchError(f"epochs (the budget in final-size epochs) must be a positive number, got {epochs!r}")
    if whole_epochs and epochs < stages:
        raise SearchError(f"a budget of {epochs:g} final-size epochs cannot give each of {stages} stages a whole "
                          f"epoch; give at least {stages} epochs or fewer stages")
    return float(epochs)


def _relative_cost(relative_cost: Mapping[int, float] | None, final_size: int) -> Callable[[int], float]:
    """Compute per image at size B relative to the final size: the pixel ratio, or a table (e.g. FLOP ratios)."""
    if relative_cost is None:
        return lambda b: (b / final_size) ** 2
    table = {int(k): float(v) for k, v in relative_cost.items()}
    bad = {k: v for k, v in table.items() if not (math.isfinite(v) and v > 0)}
    if bad:
        raise SearchError(f"relative costs must be positive numbers, got {bad}")
    if abs(table.get(final_size, 1.0) - 1.0) > 1e-9:
        raise SearchError(f"relative costs are per image vs the final size {final_size}: its own must be 1, "
                          f"got {table[final_size]}")
    table[final_size] = 1.0

    def cost(b: int) -> float:
        if b not in table:
            raise SearchError(f"relative_cost has no entry for size {b}; give one for every candidate")
        return table[b]

    return cost


def etpp_stage_epochs(sizes: Sequence[int], final_size: int, epochs: float,
                      relative_cost: Mapping[int, float] | None = None, whole_epochs: bool = False) -> tuple[float, ...]:
    """Per-stage epochs of an EfficientTrain++ trial: each of the N stages costs C/N final-size epochs (``epochs``
    = C), i.e. C/N / c(B) epochs at size B (c: ``relative_cost``, default the pixel ratio (B/v)^2).

    ``whole_epochs``: integers (what a trainer runs), by error diffusion: each stage ends as close as it can to
    k C/N of cumulative compute, so the run's total stays within half a final-size epoch of C (when no stage had to
    be raised to one epoch)."""
    n = len(sizes)
    if n == 0 or any(isinstance(b, bool) or not isinstance(b, numbers.Integral) or not 1 <= b <= final_size
                     for b in sizes):
        raise SearchError(f"sizes must be a non-empty list of integers in [1, final size {final_size}], got "
                          f"{list(sizes)!r}")
    c = _relative_cost(relative_cost, final_size)
    share = check_budget(epochs, n, whole_epochs) / n
    if not whole_epochs:
        return tuple(share / c(b) for b in sizes)
    out, spent = [], 0.0
    for k, b in enumerate(sizes, 1):
        e = max(1, int(math.floor((k * share - spent) / c(b) + 0.5)))
        out.append(e)
        spent += e * c(b)
    return tuple(out)


def _as_measurement(out: Any) -> Measurement:
    if isinstance(out, Measurement):
        return out
    if isinstance(out, bool) or not isinstance(out, (int, float)):
        raise SearchError(f"evaluate must return an accuracy (a number) or a Measurement, got {out!r}")
    return Measurement(float(out))


class _Trials:
    """Evaluations by size list: each distinct list is evaluated once, in order."""

    def __init__(self, evaluate: Evaluate, on_trial: Callable[[Trial], None] | None,
                 epochs_of: Callable[[tuple[int, ...]], tuple[float, ...]] | None = None):
        self.evaluate, self.on_trial, self.epochs_of = evaluate, on_trial, epochs_of
        self.by_sizes: dict[tuple[int, ...], Trial] = {}

    def __call__(self, sizes: Sequence[int], stage: int) -> Trial:
        sizes = tuple(int(s) for s in sizes)
        if sizes not in self.by_sizes:
            m = _as_measurement(self.evaluate(sizes))
            if not math.isfinite(m.accuracy):
                raise SearchError(f"evaluate({sizes}) returned the accuracy {m.accuracy}")
            self.by_sizes[sizes] = Trial(sizes, m.accuracy, stage, cost=m.cost, std=m.std, accuracies=m.accuracies,
                                         epochs=self.epochs_of(sizes) if self.epochs_of else None)
            if self.on_trial is not None:
                self.on_trial(self.by_sizes[sizes])
        return self.by_sizes[sizes]

    @property
    def trials(self) -> list[Trial]:
        return list(self.by_sizes.values())


def search_et(evaluate: Evaluate, candidates: Sequence[int], stages: int, final_size: int, tolerance: float = 0.0,
              on_trial: Callable[[Trial], None] | None = None) -> SearchResult:
    """EfficientTrain's Algorithm 1 (module docstring): backward from stage N-1, the prefix 1..i tied to the
    smallest size (linear search down the candidates below B_{i+1}) that keeps the baseline accuracy within
    ``tolerance``. ``on_trial`` is called after every new evaluation."""
    cands = check_search_args(candidates, stages, final_size, tolerance)
    run = _Trials(evaluate, on_trial)
    v = int(final_size)
    sizes = [v] * stages
    base = run(sizes, -1)
    threshold = base.accuracy - tolerance
    for i in range(stages - 1, 0, -1):  # the prefix B_1..B_i (1-based); B_{i+1} is sizes[i]
        for b in reversed([c for c in cands if c < sizes[i]]):
            t = run([b] * i + sizes[i:], i - 1)
            if t.accuracy < threshold:
                break
            t.accepted = True
            sizes[:i] = [b] * i
    best = tuple(sizes)
    return SearchResult("et", best, run.by_sizes[best].accuracy, base.accuracy, run.trials, tolerance=float(tolerance))


def search_forward(evaluate: Evaluate, candidates: Sequence[int], stages: int, final_size: int,
                   tolerance: float = 0.0, on_trial: Callable[[Trial], None] | None = None) -> SearchResult:
    """The forward variant (module docstring): stage by stage from the first, each alone gets the smallest
    candidate (not below the previous stage's) that keeps the baseline accuracy within ``tolerance``."""
    cands = check_search_args(candidates, stages, final_size, tolerance)
    run = _Trials(evaluate, on_trial)
    v = int(final_size)
    base = run((v,) * stages, -1)
    threshold = base.accuracy - tolerance
    chosen: list[int] = []
    for i in range(stages - 1):
        pick = v
        for b in (c for c in cands if not chosen or c >= chosen[-1]):
            t = run(chosen + [b] + [v] * (stages - i - 1), i)
            if t.accuracy >= threshold:
                t.accepted = True
                pick = b
                break
        chosen.append(pick)
        if pick == v:  # sizes never shrink again: the remaining stages stay at the final size
            chosen += [v] * (stages - 2 - i)
            break
    best = tuple(chosen + [v])
    return SearchResult("forward", best, run.by_sizes[best].accuracy, base.accuracy, run.trials,
                        tolerance=float(tolerance))


def search_etpp(evaluate: Evaluate, candidates: Sequence[int], stages: int, final_size: int, epochs: float,
                relative_cost: Mapping[int, float] | None = None, whole_epochs: bool = False,
                on_trial: Callable[[Trial], None] | None = None) -> SearchResult:
    """EfficientTrain++'s computation-constrained sequential search (module docstring) with a budget of ``epochs``
    final-size epochs. ``evaluate(sizes)`` trains the size list with :func:`etpp_stage_epochs` ``(sizes,
    final_size, epochs, relative_cost, whole_epochs)`` per stage (each trial's ``epochs`` holds them)."""
    cands = check_search_args(candidates, stages, final_size)
    budget = check_budget(epochs, stages, whole_epochs)
    v = int(final_size)
    cost = _relative_cost(relative_cost, v)
    for b in cands:  # a table without every candidate fails before anything is evaluated
        cost(b)
    run = _Trials(evaluate, on_trial, lambda s: etpp_stage_epochs(s, v, budget, relative_cost, whole_epochs))
    chosen: list[int] = []
    for k in range(stages - 1):
        options = [c for c in cands if not chosen or c >= chosen[-1]] + [v]
        tried = [run(chosen + [b] + [v] * (stages - k - 1), k) for b in options]
        win = max(tried, key=lambda t: t.accuracy)  # max keeps the first of equals: the smaller size
        win.accepted = True
        chosen.append(win.sizes[k])
        if chosen[-1] == v:
            chosen += [v] * (stages - 2 - k)
            break
    best = tuple(chosen + [v])
    t = run.by_sizes[best]
    return SearchResult("etpp", best, t.accuracy, run.by_sizes[(v,) * stages].accuracy, run.trials,
                        epochs=t.epochs, budget=budget)


def schedule_spec(sizes: Sequence[int], name: str = "searched") -> dict[str, Any]:
    """A YAML schedule (``curriculum.schedule_from_yaml``) with equal stages at ``sizes`` and the linear RandAugment
    ramp (EfficientTrain's)."""
    n = len(sizes)
    return {"name": name, "magnitude": "linear",
            "stages": [{"fraction": 1.0 / n, "size": int(s)} for s in sizes]}


def etpp_schedule_spec(sizes: Sequence[int], epochs: Sequence[float], budget: float, m0: float = 9.0,
                       name: str = "searched") -> dict[str, Any]:
    """A YAML schedule of an EfficientTrain++ trial: absolute per-stage epochs standing for a ``budget`` of final-size
    epochs, stage k (0-based) at RandAugment magnitude m0 k / (N-1) (EfficientTrain++'s m = k for N = 10)."""
    n = len(sizes)
    whole = all(float(e).is_integer() for e in epochs)
    return {"name": name, "magnitude": "stage", "m0": float(m0),
            "budget": int(budget) if float(budget).is_integer() else float(budget),
            "stages": [{"epochs": int(e) if whole else float(e), "size": int(s), "magnitude": m0 * k / (n - 1)}
                       for k, (s, e) in enumerate(zip(sizes, epochs))]}
