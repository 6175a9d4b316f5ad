"""``etrain search``: the curriculum searches of :mod:`efficienttrain_ext.curriculum.search` evaluated with real
proxy training runs of the :class:`~efficienttrain_ext.engine.trainer.Trainer`, one run directory per size list,
with ``search.csv`` / ``search.json`` / ``search.png`` and ``best_schedule.yaml``.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
from dataclasses import asdict
from typing import Sequence

import yaml

from ..config import Config, OPERATIONAL_KEYS, config_to_dict
from ..curriculum.search import SearchResult, Trial, greedy_search, schedule_spec
from ..curriculum.sizes import size_rule_for_model
from ..errors import TrainError
from .atomic import write_text_atomic
from .model_factory import create_model
from .plots import new_figure
from .trainer import Trainer

__all__ = ["run_search"]


def _trial_name(sizes: Sequence[int]) -> str:
    return "trial-" + "_".join(str(s) for s in sizes)


def _write_outputs(out_dir: str, result: SearchResult, metric: str) -> list[str]:
    rows = [dict(asdict(t), sizes="-".join(map(str, t.sizes))) for t in result.trials]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(os.path.join(out_dir, "search.csv"), buf.getvalue())
    doc = {"metric": metric, "best_sizes": list(result.sizes), "best_accuracy": result.accuracy,
           "baseline_accuracy": result.baseline_accuracy, "tolerance": result.tolerance,
           "trials": [dict(asdict(t), sizes=list(t.sizes)) for t in result.trials]}
    write_text_atomic(os.path.join(out_dir, "search.json"), json.dumps(doc, indent=1))
    write_text_atomic(os.path.join(out_dir, "best_schedule.yaml"),
                      yaml.safe_dump(schedule_spec(result.sizes), sort_keys=False))

    fig, ax = new_figure((6.5, 4.2))
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
    return [os.path.join(out_dir, n) for n in ("search.csv", "search.json", "best_schedule.yaml", "search.png")]


def _cut(spec, sizes: Sequence[int]):
    """A replay / batch_scale option for a trial: ``{size: value}`` tables cut to the trial's sizes (the baseline
    trial has none of the small ones)."""
    return {k: v for k, v in spec.items() if int(k) in sizes} if isinstance(spec, dict) else spec


def _comparable(cfg_dict: dict) -> dict:
    """A configuration as a trial's reuse check compares it: the trajectory keys, without the schedule file path
    (the trial directory's name already fixes the sizes)."""
    d = yaml.safe_load(yaml.safe_dump(cfg_dict, sort_keys=False))  # as read back from a trial's config.yaml
    for section, key in OPERATIONAL_KEYS | {("curriculum", "name")}:
        d.get(section, {}).pop(key, None)
    return d


def run_search(cfg: Config, candidates: Sequence[int], stages: int, tolerance: float = 0.0, metric: str = "top1",
               out_dir: str | None = None) -> SearchResult:
    """Greedy search with proxy runs of ``cfg`` (its model, data, recipe, epochs and final size): one training run
    per size list in ``out_dir/trial-<sizes>/``; a trial whose ``summary.json`` exists and whose ``config.yaml``
    matches this configuration is read, not retrained."""
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
    for key in ("replay", "batch_scale"):
        spec = getattr(cfg.curriculum, key)
        if isinstance(spec, dict):
            unknown = sorted(int(k) for k in spec if int(k) not in set(rounded) | {final})
            if unknown:
                raise TrainError(f"curriculum.{key} names sizes {unknown}, but the search's sizes are "
                                 f"{rounded + [final]}")
    out_dir = out_dir or os.path.join(cfg.train.output, cfg.train.name or f"search-{cfg.model.name}")
    os.makedirs(out_dir, exist_ok=True)

    def trial_config(sizes: tuple[int, ...], sched: str):
        tcfg = copy.deepcopy(cfg)
        tcfg.curriculum.name = sched
        tcfg.curriculum.replay = _cut(cfg.curriculum.replay, sizes)
        tcfg.curriculum.batch_scale = _cut(cfg.curriculum.batch_scale, sizes)
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
        write_text_atomic(sched, yaml.safe_dump(schedule_spec(sizes, _trial_name(sizes)), sort_keys=False))
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
