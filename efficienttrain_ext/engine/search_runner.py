"""``etrain search``: the curriculum searches of :mod:`efficienttrain_ext.curriculum.search` evaluated with real
proxy training runs of the :class:`~efficienttrain_ext.engine.trainer.Trainer`.

One run directory per (size list, seed), ``trial-<sizes>-seed<s>`` (``trial-etpp-...`` for etpp, whose trials run
other epochs), each with its own ``trial_schedule.yaml``: the stages with their replay / batch factors, so the file
alone (copied to ``best_schedule.yaml`` for the best trial) reproduces the trial. A trial already trained with the
same configuration and schedule is read, one interrupted after a checkpoint is resumed, anything else is trained
(again). The search writes ``search.csv`` / ``search.json`` / ``search.png`` (mean +- std over the seeds).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
from dataclasses import asdict
from typing import Any, Callable, Sequence

import yaml

from ..config import Config, OPERATIONAL_KEYS, config_to_dict
from ..curriculum.flops import flops_by_size
from ..curriculum.schedules import schedule_from_yaml, with_batch_scale, with_replay
from ..curriculum.search import (ALGORITHMS, Measurement, SearchResult, Trial, check_budget, check_search_args,
                                 etpp_schedule_spec, etpp_stage_epochs, schedule_spec, search_et, search_etpp,
                                 search_forward)
from ..curriculum.sizes import SizeRule, size_rule_for_model
from ..data.build import build_datasets
from ..errors import CheckpointError, SearchError
from .atomic import write_text_atomic
from .model_factory import create_model
from .plots import new_figure
from .trainer import Trainer

__all__ = ["run_search", "trial_name", "METRICS", "COSTS"]

METRICS = ("top1", "ema_top1", "top5")
COSTS = ("pixels", "flops")


def trial_name(sizes: Sequence[int], seed: int, algorithm: str = "et") -> str:
    """A trial's run directory name; et and forward trials (equal stages) are shared, etpp's are its own."""
    return f"trial-{'etpp-' if algorithm == 'etpp' else ''}{'_'.join(map(str, sizes))}-seed{seed}"


def _dash(values: Sequence[Any]) -> str:
    return "-".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _write_outputs(out_dir: str, result: SearchResult, metric: str, seeds: Sequence[int],
                   best_spec: dict[str, Any]) -> list[str]:
    fields = ["sizes", "accuracy", "std", "accuracies", "stage", "accepted", "cost", "epochs"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for t in result.trials:
        w.writerow(dict(sizes=_dash(t.sizes), accuracy=t.accuracy, std=t.std,
                        accuracies=";".join(f"{a:g}" for a in t.accuracies), stage=t.stage, accepted=t.accepted,
                        cost="" if t.cost is None else t.cost, epochs="" if t.epochs is None else _dash(t.epochs)))
    write_text_atomic(os.path.join(out_dir, "search.csv"), buf.getvalue())
    doc = {"algorithm": result.algorithm, "metric": metric, "seeds": list(seeds), "best_sizes": list(result.sizes),
           "best_accuracy": result.accuracy, "best_std": result.best.std, "best_epochs":
           None if result.epochs is None else list(result.epochs), "baseline_accuracy": result.baseline_accuracy,
           "tolerance": result.tolerance, "budget": result.budget,
           "trials": [dict(asdict(t), sizes=list(t.sizes), accuracies=list(t.accuracies),
                           epochs=None if t.epochs is None else list(t.epochs)) for t in result.trials]}
    write_text_atomic(os.path.join(out_dir, "search.json"), json.dumps(doc, indent=1))
    write_text_atomic(os.path.join(out_dir, "best_schedule.yaml"), yaml.safe_dump(best_spec, sort_keys=False))

    fig, ax = new_figure((6.8, 4.4))
    for i, t in enumerate(result.trials):
        # Algorithm 1 / forward: accuracy against compute; etpp: every trial costs the budget, so in trial order
        x = i + 1 if result.algorithm == "etpp" else \
            (t.cost if t.cost is not None else sum(s * s for s in t.sizes) / (len(t.sizes) * t.sizes[-1] ** 2))
        color = "tab:green" if t.sizes == result.sizes else "tab:blue" if t.accepted or t.stage < 0 else "tab:red"
        ax.errorbar(x, t.accuracy, yerr=t.std if len(t.accuracies) > 1 else None, fmt="o" if color != "tab:red"
                    else "x", color=color, capsize=3)
        ax.annotate(_dash(t.sizes), (x, t.accuracy), fontsize=6, xytext=(3, 3), textcoords="offset points")
    if result.tolerance is not None:
        ax.axhline(result.baseline_accuracy - result.tolerance, ls="--", color="gray", lw=1,
                   label=f"baseline - tolerance ({result.baseline_accuracy:.2f} - {result.tolerance:g})")
        ax.set_xlabel("predicted compute vs baseline")
    else:
        ax.axhline(result.baseline_accuracy, ls="--", color="gray", lw=1,
                   label=f"all stages at the final size ({result.baseline_accuracy:.2f})")
        ax.set_xlabel(f"trial (each {result.budget:g} final-size epochs of compute)")
    spread = f", mean +- std of seeds {','.join(map(str, seeds))}" if len(seeds) > 1 else ""
    ax.set_ylabel(metric + spread)
    ax.set_title(f"{result.algorithm} curriculum search: best {_dash(result.sizes)}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "search.png"), dpi=120)
    return [os.path.join(out_dir, n) for n in ("search.csv", "search.json", "best_schedule.yaml", "search.png")]


def _cut(spec, sizes: Sequence[int]):
    """A replay / batch_scale option for a trial: ``{size: value}`` tables cut to the trial's sizes (the baseline
    trial has none of the small ones)."""
    return {k: v for k, v in spec.items() if int(k) in sizes} if isinstance(spec, dict) else spec


def _comparable(cfg_dict: dict) -> dict:
    """A configuration as a trial's reuse check compares it: the trajectory keys, without the schedule file path
    (the schedule's content is compared on its own)."""
    d = yaml.safe_load(yaml.safe_dump(cfg_dict, sort_keys=False))  # as read back from a trial's config.yaml
    for section, key in OPERATIONAL_KEYS | {("curriculum", "name")}:
        d.get(section, {}).pop(key, None)
    return d


def _read_yaml(path: str) -> Any:
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError):  # missing, or being rewritten by rank 0 for a retrain: not reusable
        return None


def _with_stage_options(spec: dict[str, Any], cfg: Config, rule: SizeRule) -> dict[str, Any]:
    """``spec`` with the search's replay / batch_scale written into its stages (as the trainer would apply them),
    so the schedule file needs no options besides itself."""
    c, v = cfg.curriculum, cfg.data.final_size
    if c.replay is None and c.batch_scale is None:
        return spec
    sizes = [st["size"] for st in spec["stages"]]
    sched = schedule_from_yaml(spec, cfg.train.epochs, v, rule, m0=c.m0)
    if c.replay is not None:
        sched = with_replay(sched, _cut(c.replay, sizes))
    if c.batch_scale is not None:
        sched = with_batch_scale(sched, _cut(c.batch_scale, sizes))
    by_size = {st.size: st for st in sched.stages}  # both options are functions of the stage size
    out = copy.deepcopy(spec)
    for st in out["stages"]:
        if c.replay is not None:
            st["replay"] = by_size[st["size"]].replay
        if c.batch_scale is not None:
            st["batch_scale"] = by_size[st["size"]].batch_scale
    return out


def _num_classes(cfg: Config) -> int:
    d = cfg.data
    return build_datasets(d.dataset, d.root, d.final_size, train_subset=d.train_subset, val_subset=d.val_subset,
                          val_split=d.val_split, split_seed=d.split_seed, download=d.download).num_classes


def _check(cfg: Config, algorithm: str, stages: int, metric: str, cost: str, seeds: Sequence[int]) -> None:
    if algorithm not in ALGORITHMS:
        raise SearchError(f"unknown search algorithm {algorithm!r}; choose from {list(ALGORITHMS)}")
    if metric not in METRICS:
        raise SearchError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    if metric == "ema_top1" and not cfg.train.ema:
        raise SearchError("metric ema_top1 needs train.ema=true")
    if cost not in COSTS:
        raise SearchError(f"cost must be one of {list(COSTS)}, got {cost!r}")
    if not seeds or len(set(seeds)) != len(seeds) or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise SearchError(f"seeds must be distinct integers, at least one, got {list(seeds)!r}")
    if algorithm == "etpp":
        check_budget(cfg.train.epochs, stages, whole_epochs=True)
    elif cfg.train.epochs < stages:  # shorter runs would drop whole stages from the trial schedules
        raise SearchError(f"a search with {stages} stages needs at least {stages} epochs, got {cfg.train.epochs}")


def run_search(cfg: Config, candidates: Sequence[int], stages: int, algorithm: str = "et", tolerance: float = 0.0,
               metric: str = "top1", seeds: Sequence[int] | None = None, cost: str = "pixels",
               out_dir: str | None = None) -> SearchResult:
    """Search with proxy runs of ``cfg`` (its model, data, recipe, final size, and ``train.epochs``: the length of
    an et/forward trial, the budget C of an etpp trial), one run per (size list, seed) under ``out_dir``, ranked by
    the mean of ``metric`` over ``seeds`` (default: ``train.seed``). ``cost`` (etpp): how a stage's epochs follow its
    size, ``pixels`` ((v/B)^2) or ``flops`` (the model's measured train-FLOP ratio)."""
    seeds = list(seeds) if seeds is not None else [cfg.train.seed]
    final = cfg.data.final_size
    check_search_args(list(candidates), stages, final, tolerance)
    _check(cfg, algorithm, stages, metric, cost, seeds)
    # candidates the model can take (rounded like the curricula's sizes), checked before anything trains
    flops_model = cost == "flops" and algorithm == "etpp"
    model = create_model(cfg, _num_classes(cfg) if flops_model else 10)
    rule = size_rule_for_model(model, cfg.curriculum.size_multiple, cfg.curriculum.min_size)
    to_rule = {c: rule.round(c) for c in candidates}
    rounded = sorted(set(to_rule.values()))
    too_big = sorted(c for c, r in to_rule.items() if r >= final)
    if too_big:  # e.g. 220 for a final 224 on a patch-16 ViT
        raise SearchError(f"candidates {too_big} round to {sorted({to_rule[c] for c in too_big})} for "
                          f"{cfg.model.name}, not below the final size {final}; give smaller candidates")
    for c in rounded:
        rule.check(c, "candidate size")
    for key in ("replay", "batch_scale"):
        spec = getattr(cfg.curriculum, key)
        if isinstance(spec, dict):
            unknown = sorted(int(k) for k in spec if int(k) not in set(rounded) | {final})
            if unknown:
                raise SearchError(f"curriculum.{key} names sizes {unknown}, but the search's sizes are "
                                  f"{rounded + [final]}")
    relative_cost = None
    if flops_model:
        flops = flops_by_size(model, rounded + [final])
        relative_cost = {b: f / flops[final] for b, f in flops.items()}
    budget = float(cfg.train.epochs)
    out_dir = out_dir or os.path.join(cfg.train.output, cfg.train.name or f"search-{cfg.model.name}")
    os.makedirs(out_dir, exist_ok=True)
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun every rank trains, rank 0 writes

    def say(text: str) -> None:
        if main_rank:
            print(f"search: {text}", flush=True)

    def trial_spec(sizes: tuple[int, ...], name: str) -> dict[str, Any]:
        if algorithm == "etpp":
            epochs = etpp_stage_epochs(sizes, final, budget, relative_cost, whole_epochs=True)
            spec = etpp_schedule_spec(sizes, epochs, budget, cfg.curriculum.m0, name)
        else:
            spec = schedule_spec(sizes, name)
        return _with_stage_options(spec, cfg, rule)

    def trial_config(sched: str, seed: int) -> Config:
        tcfg = copy.deepcopy(cfg)
        tcfg.curriculum.name = sched
        tcfg.curriculum.replay = tcfg.curriculum.batch_scale = None  # in the schedule file's stages
        tcfg.train.seed = seed
        return tcfg

    def train_trial(sizes: tuple[int, ...], seed: int) -> tuple[float, float]:
        name = trial_name(sizes, seed, algorithm)
        run_dir = os.path.join(out_dir, name)
        sched = os.path.join(run_dir, "trial_schedule.yaml")
        spec, tcfg = trial_spec(sizes, name), trial_config(sched, seed)
        theirs, their_spec = _read_yaml(os.path.join(run_dir, "config.yaml")), _read_yaml(sched)
        same = isinstance(theirs, dict) and _comparable(theirs) == _comparable(config_to_dict(tcfg)) \
            and their_spec == yaml.safe_load(yaml.safe_dump(spec, sort_keys=False))
        summary = os.path.join(run_dir, "summary.json")
        if same and os.path.isfile(summary):
            with open(summary) as f:
                s = json.load(f)
            if metric in s["final"]:
                say(f"{name} already trained, reusing its result")
                return float(s["final"][metric]), float(s["predicted_cost"])
        trainer = None
        if same and os.path.isfile(os.path.join(run_dir, "last.pt")):
            try:
                trainer = Trainer(tcfg, run_dir=run_dir, resume=run_dir)
                say(f"{name} was interrupted, resuming it after epoch {trainer.start_epoch}")
            except CheckpointError as e:
                say(f"{name}: its checkpoint cannot be used ({e}), training it again from the start")
        elif os.path.isfile(summary) or os.path.isfile(os.path.join(run_dir, "last.pt")):
            say(f"{name} was trained with another configuration, training it again")
        elif os.path.isfile(os.path.join(run_dir, "metrics.jsonl")):
            say(f"{name} stopped before its first checkpoint, training it again from the start")
        if trainer is None:
            os.makedirs(run_dir, exist_ok=True)
            write_text_atomic(sched, yaml.safe_dump(spec, sort_keys=False))
            trainer = Trainer(tcfg, run_dir=run_dir, overwrite=True)
        row = trainer.fit()
        if metric not in row:
            raise SearchError(f"metric {metric!r} is not in the run's metrics (is train.ema off?)")
        return float(row[metric]), float(trainer.predicted_cost)

    def evaluate(sizes: tuple[int, ...]) -> Measurement:
        runs = [train_trial(sizes, s) for s in seeds]
        return Measurement.of_seeds([a for a, _ in runs], cost=runs[0][1])

    count = [0]

    def report(t: Trial) -> None:
        count[0] += 1
        what = "baseline" if t.stage < 0 else f"stage {t.stage + 1}"
        acc = f"{t.accuracy:.2f}" + (f" +- {t.std:.2f} ({len(t.accuracies)} seeds)" if len(t.accuracies) > 1 else "")
        extra = (f", epochs {_dash(t.epochs)}" if t.epochs is not None else "") \
            + (f", predicted compute {t.cost:.3f}" if t.cost is not None else "")
        say(f"trial {count[0]} ({what}): sizes {_dash(t.sizes)}: {metric} {acc}{extra}")

    on_trial: Callable[[Trial], None] | None = report if main_rank else None
    if algorithm == "etpp":
        result = search_etpp(evaluate, rounded, stages, final, budget, relative_cost, whole_epochs=True,
                             on_trial=on_trial)
    else:
        search = search_et if algorithm == "et" else search_forward
        result = search(evaluate, rounded, stages, final, tolerance, on_trial=on_trial)
    if not main_rank:
        return result
    for path in _write_outputs(out_dir, result, metric, seeds, trial_spec(result.sizes, "searched")):
        print(f"wrote {path}")
    than = f"tolerance {tolerance:g}" if algorithm != "etpp" else f"budget {budget:g} final-size epochs"
    say(f"best sizes {_dash(result.sizes)}: {metric} {result.accuracy:.2f} (all at the final size "
        f"{result.baseline_accuracy:.2f}, {than}; {len(result.trials)} size lists x {len(seeds)} seeds); "
        f"train with --curriculum {os.path.join(out_dir, 'best_schedule.yaml')}")
    return result
