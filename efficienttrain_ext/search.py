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

import copy
import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import yaml

__all__ = ["Trial", "SearchResult", "check_search_args", "greedy_search", "schedule_spec", "run_search"]


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
    """The sorted distinct candidates; ValueError for anything the search cannot run with."""
    if isinstance(stages, bool) or not isinstance(stages, int) or stages < 2:
        raise ValueError(f"stages must be an integer >= 2, got {stages!r}")
    if not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0 (accuracy points), got {tolerance!r}")
    sizes = sorted({int(c) for c in candidates})
    if not sizes:
        raise ValueError("candidates: give at least one size below the final size")
    bad = [c for c in sizes if c < 1 or c >= final_size]
    if bad:
        raise ValueError(f"candidates must lie in [1, final size {final_size}), got {bad}")
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


# ---------------------------------------------------------------------------------------------------------------
# the `etrain search` driver


def _trial_name(sizes: Sequence[int]) -> str:
    return "trial-" + "_".join(str(s) for s in sizes)


def _write_outputs(out_dir: str, result: SearchResult, metric: str) -> list[str]:
    rows = [dict(asdict(t), sizes="-".join(map(str, t.sizes))) for t in result.trials]
    with open(os.path.join(out_dir, "search.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    doc = {"metric": metric, "best_sizes": list(result.sizes), "best_accuracy": result.accuracy,
           "baseline_accuracy": result.baseline_accuracy, "tolerance": result.tolerance,
           "trials": [dict(asdict(t), sizes=list(t.sizes)) for t in result.trials]}
    with open(os.path.join(out_dir, "search.json"), "w") as f:
        json.dump(doc, f, indent=1)
    with open(os.path.join(out_dir, "best_schedule.yaml"), "w") as f:
        yaml.safe_dump(schedule_spec(result.sizes), f, sort_keys=False)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for t in result.trials:
        x = t.cost if t.cost is not None else sum(s * s for s in t.sizes) / (len(t.sizes) * t.sizes[-1] ** 2)
        style = "o" if t.accepted or t.stage < 0 else "x"
        ax.plot(x, t.accuracy, style, color="tab:green" if t.sizes == result.sizes else "tab:blue")
        ax.annotate("-".join(map(str, t.sizes)), (x, t.accuracy), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.axhline(result.baseline_accuracy - result.tolerance, ls="--", color="gray", lw=1,
               label=f"baseline - tolerance ({result.baseline_accuracy:.2f} - {result.tolerance:g})")
    ax.set_xlabel("predicted compute vs baseline")
    ax.set_ylabel(metric)
    ax.set_title(f"greedy curriculum search: best {'-'.join(map(str, result.sizes))}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = os.path.join(out_dir, "search.png")
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return [os.path.join(out_dir, n) for n in ("search.csv", "search.json", "best_schedule.yaml", "search.png")]


def _trial_options(options: dict, sizes: Sequence[int]) -> dict:
    """The curriculum options a trial takes: replay and batch_scale only (the trial schedule is a YAML file), with
    ``{size: value}`` tables cut to the trial's sizes (the baseline trial has none of the small ones)."""
    out = {}
    for key in ("replay", "batch_scale"):
        if key in options:
            v = options[key]
            out[key] = {k: x for k, x in v.items() if int(k) in sizes} if isinstance(v, dict) else v
    return out


def _comparable(cfg_dict: dict) -> dict:
    """A configuration as a trial's reuse check compares it: the trajectory keys, without the schedule file path
    (the trial directory's name already fixes the sizes)."""
    from .config import OPERATIONAL_KEYS

    d = yaml.safe_load(yaml.safe_dump(cfg_dict, sort_keys=False))  # as read back from a trial's config.yaml
    for section, key in OPERATIONAL_KEYS | {("curriculum", "name")}:
        d.get(section, {}).pop(key, None)
    return d


def _write_atomic(path: str, text: str) -> None:
    """Under torchrun every rank writes the same file: replace it whole, so no rank reads a truncated one."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def run_search(cfg, candidates: Sequence[int], stages: int, tolerance: float = 0.0, metric: str = "top1",
               out_dir: str | None = None) -> SearchResult:
    """Greedy search with proxy runs of ``cfg`` (its model, data, recipe, epochs and final size): one training run
    per size list in ``out_dir/trial-<sizes>/``; a trial whose ``summary.json`` exists and whose ``config.yaml``
    matches this configuration is read, not retrained."""
    from .config import config_to_dict
    from .resize import size_rule_for_model
    from .train import Trainer, TrainError, create_model

    final = cfg.data.final_size
    if cfg.train.epochs < stages:  # shorter runs would drop whole stages from the trial schedules
        raise TrainError(f"a search with {stages} stages needs at least {stages} epochs, got {cfg.train.epochs}")
    if metric not in ("top1", "ema_top1", "top5"):
        raise TrainError(f"metric must be top1, ema_top1 or top5, got {metric!r}")
    if metric == "ema_top1" and not cfg.train.ema:
        raise TrainError("metric ema_top1 needs train.ema=true")
    # candidates the model can take (rounded like the curricula's sizes), checked before anything trains
    rule = size_rule_for_model(create_model(cfg, 10), cfg.curriculum.size_multiple)
    to_rule = {c: rule.round(c) for c in candidates}
    rounded = sorted(set(to_rule.values()))
    too_big = sorted(c for c, r in to_rule.items() if r >= final)
    if too_big:  # e.g. 220 for a final 224 on a patch-16 ViT
        raise TrainError(f"candidates {too_big} round to {sorted({to_rule[c] for c in too_big})} for "
                         f"{cfg.model.name}, not below the final size {final}; give smaller candidates")
    for c in rounded:
        rule.check(c, "candidate size")
    options = dict(cfg.curriculum.options)
    for key in ("replay", "batch_scale"):
        if isinstance(options.get(key), dict):
            unknown = sorted(int(k) for k in options[key] if int(k) not in set(rounded) | {final})
            if unknown:
                raise TrainError(f"curriculum.options.{key} names sizes {unknown}, but the search's sizes are "
                                 f"{rounded + [final]}")
    out_dir = out_dir or os.path.join(cfg.train.output, cfg.train.name or f"search-{cfg.model.name}")
    os.makedirs(out_dir, exist_ok=True)

    def trial_config(sizes: tuple[int, ...], sched: str):
        tcfg = copy.deepcopy(cfg)
        tcfg.curriculum.name = sched
        tcfg.curriculum.options = _trial_options(options, sizes)
        return tcfg

    def evaluate(sizes: tuple[int, ...]) -> tuple[float, float]:
        run_dir = os.path.join(out_dir, _trial_name(sizes))
        sched = os.path.join(run_dir, "trial_schedule.yaml")
        tcfg = trial_config(sizes, sched)
        summary = os.path.join(run_dir, "summary.json")
        saved = os.path.join(run_dir, "config.yaml")
        if os.path.isfile(summary) and os.path.isfile(saved):
            try:
                with open(saved) as f:
                    theirs = yaml.safe_load(f)
                same = isinstance(theirs, dict) and _comparable(theirs) == _comparable(config_to_dict(tcfg))
            except (OSError, yaml.YAMLError):  # e.g. being rewritten by rank 0 for a retrain: not reusable
                same = False
            if same:
                with open(summary) as f:
                    s = json.load(f)
                print(f"search: {_trial_name(sizes)} already trained, reusing its result", flush=True)
                return float(s["final"][metric]), float(s["predicted_cost"])
            print(f"search: {_trial_name(sizes)} was trained with another configuration, training it again",
                  flush=True)
        os.makedirs(run_dir, exist_ok=True)
        _write_atomic(sched, yaml.safe_dump(schedule_spec(sizes, _trial_name(sizes)), sort_keys=False))
        trainer = Trainer(tcfg, run_dir=run_dir, overwrite=True)
        row = trainer.fit()
        if metric not in row:
            raise TrainError(f"metric {metric!r} is not in the run's metrics (is train.ema off?)")
        return float(row[metric]), float(trainer.predicted_cost)

    def report(t: Trial) -> None:
        what = "baseline" if t.stage < 0 else f"stage {t.stage + 1}"
        print(f"search: {what}: sizes {'-'.join(map(str, t.sizes))}: {metric} {t.accuracy:.2f}"
              + (f", predicted compute {t.cost:.3f}" if t.cost is not None else ""), flush=True)

    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun every rank trains, rank 0 writes
    result = greedy_search(evaluate, rounded, stages, final, tolerance, on_trial=report if main_rank else None)
    if not main_rank:
        return result
    for path in _write_outputs(out_dir, result, metric):
        print(f"wrote {path}")
    print(f"search: best sizes {'-'.join(map(str, result.sizes))}: {metric} {result.accuracy:.2f} "
          f"(baseline {result.baseline_accuracy:.2f}, tolerance {tolerance:g}); train with "
          f"--curriculum {os.path.join(out_dir, 'best_schedule.yaml')}", flush=True)
    return result
