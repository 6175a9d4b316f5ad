"""``etrain compare``: one configuration, several curricula x seeds, mean +- std of accuracy, time and compute.

A curriculum spec is ``NAME[@KEY=VALUE[@KEY=VALUE...]]``:

* ``NAME``: a built-in curriculum (``efficienttrain``, ``efficienttrain++``, ``progressive``, ``none``) or a schedule
  ``.yaml`` file;
* ``KEY=VALUE``: a configuration override for this curriculum only. A key without a section is a curriculum key
  (``resize=bilinear`` is ``curriculum.resize=bilinear``, ``progressive.min_scale=0.5`` is
  ``curriculum.progressive.min_scale=0.5``); a dotted key with a section is used as it is (``train.epochs=14``);
* ``cost=REF``: equal predicted compute (train FLOPs, :func:`~efficienttrain_ext.curriculum.tables.stage_costs`)
  with ``REF``, a curriculum name / .yaml file or a number (compute relative to the configuration's baseline,
  ``train.epochs`` epochs at the final size). ``progressive@cost=REF`` picks ``curriculum.progressive.min_scale``
  (a linear ramp of equal cost, the paper's Table 13c); any other curriculum picks ``train.epochs`` (for ``none``:
  the final size with fewer epochs, ``E' = round(E * cost)``; for ``efficienttrain++`` its budget).

Each run trains in ``OUT/<label>/seed<k>/`` (label: the spec with ``/`` replaced). A run whose ``summary.json``
exists and whose saved configuration matches is read, not trained again; a run that stopped after a checkpoint is
resumed exactly; a run directory written by a different configuration is an error (``--overwrite`` retrains it).

Outputs in ``OUT``: ``compare.csv`` / ``compare.md`` (one row per curriculum: mean +- std over seeds),
``runs.csv`` (one row per run), ``compare.json`` (both, plus the resolved overrides), ``accuracy_vs_time.png``
(one curve per curriculum: mean over seeds, +- std band), the same against process CPU time
(``accuracy_vs_cpu_time.png``: what a busy machine disturbs less), the accuracy-vs-compute front
(``accuracy_vs_compute.png``: each curriculum's final top-1, mean +- std, against its CPU time and its predicted
compute, the budgets of one method, e.g. ``none``, ``none@cost=0.7``, ``none@cost=0.5``, joined by one line) and
``schedules.png``.

Compute columns: ``predicted`` is the FLOP estimate relative to the configuration's baseline (``train.epochs`` at
the final size); ``measured`` is the mean training time (evaluation excluded) relative to the reference curriculum's
(plain ``none`` when it is in the list, else the first); ``cpu`` is the same ratio of process CPU time, which a
busy machine disturbs less than wall time; ``cpu (own)`` is each run's CPU time in units of its own final-size epochs
(:func:`own_final_epochs`), which cancels the load that differs between runs.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import yaml

from ..config import Config, apply_overrides, config_from_dict, config_to_dict, trajectory_dict
from ..curriculum.flops import flops_by_size
from ..curriculum.tables import stage_costs
from ..data import build_datasets
from ..errors import ConfigError, ScheduleError, TrainError
from .atomic import write_text_atomic
from .metrics import read_metrics
from .model_factory import create_model
from .plots import new_figure, plot_schedules
from .trainer import Trainer, make_schedule

__all__ = ["CompareEntry", "parse_spec", "resolve_entries", "run_compare", "summarize", "method_of", "front_points",
           "own_final_epochs", "COMPARE_FILES"]

# what etrain compare writes into its output directory (besides one directory per curriculum)
COMPARE_FILES = ("compare.csv", "compare.md", "compare.json", "runs.csv", "accuracy_vs_time.png",
                 "accuracy_vs_cpu_time.png", "accuracy_vs_compute.png", "schedules.png")

_SECTIONS = ("model", "data", "curriculum", "optim", "aug", "train")


@dataclass
class CompareEntry:
    """One curriculum of a comparison: the spec as given, its directory label, the curriculum name, its overrides,
    and (``cost=``) the reference whose predicted compute it must match."""

    spec: str
    label: str
    curriculum: str
    overrides: list[str] = field(default_factory=list)
    cost_ref: str | None = None
    resolved: list[str] = field(default_factory=list)  # overrides chosen by the harness (cost=)
    target_cost: float | None = None


def _label(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=@,-]", "_", spec.replace(os.sep, "_")).strip("._") or "run"


def parse_spec(spec: str) -> CompareEntry:
    """``NAME[@KEY=VALUE...]`` -> :class:`CompareEntry` (module docstring)."""
    name, *opts = spec.strip().split("@")
    if not name:
        raise ConfigError(f"curriculum spec {spec!r} has no curriculum name (expected NAME[@KEY=VALUE...])")
    overrides, cost_ref = [f"curriculum.name={name}"], None
    for opt in opts:
        key, eq, value = opt.partition("=")
        key = key.strip()
        if not eq or not key or not value:
            raise ConfigError(f"curriculum spec {spec!r}: option {opt!r} must look like KEY=VALUE")
        if key == "cost":
            cost_ref = value.strip()
            continue
        if key.split(".")[0] not in _SECTIONS:
            key = f"curriculum.{key}"
        if key == "curriculum.name":
            raise ConfigError(f"curriculum spec {spec!r}: the name comes before the first @")
        overrides.append(f"{key}={value}")
    base = os.path.splitext(os.path.basename(name))[0] if name.endswith((".yaml", ".yml")) else name
    label = _label("@".join([base] + opts))
    return CompareEntry(spec, label, name, overrides, cost_ref)


class _CostModel:
    """Predicted compute of configurations relative to ``base``'s baseline (``base.train.epochs`` epochs at the
    final size), with train FLOPs per size counted once per model configuration."""

    def __init__(self, base: Config, num_classes: int):
        self.epochs = base.train.epochs
        self.num_classes = num_classes
        self._models: dict[str, Any] = {}
        self._flops: dict[tuple[str, int], float] = {}

    def _model(self, cfg: Config):
        key = json.dumps(config_to_dict(cfg)["model"], sort_keys=True, default=str)
        if key not in self._models:
            self._models[key] = (key, create_model(cfg, self.num_classes))
        return self._models[key]

    def cost(self, cfg: Config) -> float:
        key, model = self._model(cfg)
        schedule = make_schedule(cfg, model)
        sizes = sorted({s.size for s in schedule.stages} | {cfg.data.final_size})
        missing = [s for s in sizes if (key, s) not in self._flops]
        for s, f in flops_by_size(model, missing).items():
            self._flops[key, s] = f
        _, rel = stage_costs(schedule, {s: self._flops[key, s] for s in sizes})
        return rel * schedule.baseline / self.epochs  # relative to the comparison's baseline, not the run's own


def _entry_config(base: Config, entry: CompareEntry) -> Config:
    try:
        return apply_overrides(base, entry.overrides + entry.resolved)
    except ConfigError as e:
        raise ConfigError(f"curriculum spec {entry.spec!r}: {e}") from None


def _closest(candidates: Sequence[Any], cost: Callable[[Any], float | None], target: float) -> tuple[Any, float]:
    best = None
    for c in candidates:
        v = cost(c)
        if v is not None and (best is None or abs(v - target) < abs(best[1] - target) - 1e-12):
            best = (c, v)
    if best is None:
        raise ConfigError("no candidate value is valid for this model")
    return best


def _resolve_cost(base: Config, entry: CompareEntry, costs: _CostModel) -> None:
    ref = entry.cost_ref
    try:
        target = float(ref)
    except ValueError:
        ref_entry = parse_spec(ref)
        if ref_entry.cost_ref is not None or len(ref_entry.overrides) > 1:
            raise ConfigError(f"curriculum spec {entry.spec!r}: cost={ref} must name a plain curriculum or a "
                              "number, without options") from None
        target = costs.cost(_entry_config(base, ref_entry))
    if not target > 0:
        raise ConfigError(f"curriculum spec {entry.spec!r}: cost must be positive, got {ref}")
    cfg = _entry_config(base, entry)

    def trial(extra: list[str]) -> float | None:
        try:
            return costs.cost(apply_overrides(cfg, extra))
        except ScheduleError:  # e.g. a min_scale whose first size is below what the model takes
            return None

    try:
        if entry.curriculum == "progressive":
            # min_scale on a fine grid; sizes are rounded to the model's step, so the cost is a step function and
            # the closest value is taken (ties: the larger min_scale, the gentler ramp)
            grid = [round(1.0 - i * 0.0025, 4) for i in range(int(0.95 / 0.0025) + 1)]
            value, got = _closest(grid, lambda s: trial([f"curriculum.progressive.min_scale={s}"]), target)
            entry.resolved = [f"curriculum.progressive.min_scale={value}"]
        else:
            e0 = cfg.train.epochs
            value, got = _closest(range(1, 4 * e0 + 1), lambda e: trial([f"train.epochs={e}"]), target)
            entry.resolved = [f"train.epochs={value}"]
    except ConfigError as e:
        raise ConfigError(f"curriculum spec {entry.spec!r}: cannot match cost {target:.3f}: {e}") from None
    entry.target_cost = target
    print(f"compare: {entry.spec}: {entry.resolved[0]} (predicted compute {got:.3f}, target {target:.3f})",
          flush=True)


def resolve_entries(base: Config, specs: Sequence[str], num_classes: int) -> list[tuple[CompareEntry, Config]]:
    """Parse the specs and resolve ``cost=``; returns each entry with its configuration (seed not yet set)."""
    entries = [parse_spec(s) for s in specs]
    labels = [e.label for e in entries]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"curricula {dup} are listed twice (or map to the same directory name)")
    costs = _CostModel(base, num_classes)
    out = []
    for e in entries:
        if e.cost_ref is not None:
            _resolve_cost(base, e, costs)
        out.append((e, _entry_config(base, e)))
    return out


# ----- running


def _same_config(run_dir: str, cfg: Config) -> bool | None:
    """Whether ``run_dir`` was written by ``cfg`` (operational keys aside); None if it holds no configuration."""
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            theirs = config_from_dict(yaml.safe_load(f))
    except (OSError, ConfigError, yaml.YAMLError):
        return False
    return trajectory_dict(theirs) == trajectory_dict(cfg)


def _train_one(cfg: Config, run_dir: str, overwrite: bool) -> str:
    """Train (or resume, or skip) one run; returns what was done."""
    same = _same_config(run_dir, cfg)
    if same is not None and not same and not overwrite:
        raise TrainError(f"{run_dir} holds a run of a different configuration; pass --overwrite to retrain it or "
                         "choose another --output")
    if same and not overwrite and os.path.isfile(os.path.join(run_dir, "summary.json")):
        return "finished"
    if same and not overwrite and os.path.isfile(os.path.join(run_dir, "last.pt")):
        Trainer(cfg, run_dir=run_dir, resume=run_dir).fit()
        return "resumed"
    Trainer(cfg, run_dir=run_dir, overwrite=True).fit()
    return "trained"


def run_compare(base: Config, specs: Sequence[str], seeds: Sequence[int], out_dir: str,
                overwrite: bool = False, report_only: bool = False) -> dict[str, Any]:
    """Train every curriculum x seed (seed-major: a cut-short comparison has whole seeds), then write the tables
    and plots (module docstring). ``report_only``: train nothing, tabulate the runs that have finished (e.g. of a
    grid still running). Returns the summary written to ``compare.json``."""
    if not specs:
        raise ConfigError("give at least one curriculum (--curricula efficienttrain,none)")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct, got {list(seeds)}")
    d = base.data
    # only the class count is kept: in-memory datasets (cifar10) are not held twice while each run builds its own
    num_classes = build_datasets(d.dataset, d.root, d.final_size, train_subset=d.train_subset,
                                 val_subset=d.val_subset, val_split=d.val_split, split_seed=d.split_seed,
                                 download=d.download).num_classes
    entries = resolve_entries(base, specs, num_classes)
    os.makedirs(out_dir, exist_ok=True)
    total, k = len(entries) * len(seeds), 0
    if report_only and overwrite:
        raise ConfigError("--report-only trains nothing; it does not go with --overwrite")
    for seed in seeds if not report_only else ():
        for entry, cfg in entries:
            k += 1
            run_dir = os.path.join(out_dir, entry.label, f"seed{seed}")
            scfg = apply_overrides(cfg, [f"train.seed={seed}", f"train.output={out_dir}",
                                         f"train.name={entry.label}/seed{seed}"])
            print(f"compare: [{k}/{total}] {entry.spec} seed {seed} -> {run_dir}", flush=True)
            what = _train_one(scfg, run_dir, overwrite)
            print(f"compare: [{k}/{total}] {entry.spec} seed {seed}: {what}", flush=True)
    if int(os.environ.get("RANK", "0")) != 0:
        return {}
    result = summarize(out_dir, [e for e, _ in entries], seeds, base.train.epochs)
    for path in write_outputs(out_dir, result):
        print(f"wrote {path}")
    print(result["markdown"])
    return result


# ----- tables and plots


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def own_final_epochs(rows: Sequence[dict[str, Any]], final_size: int, epochs: int) -> float | None:
    """A run's training CPU time in units of its own final-size epochs, relative to ``epochs`` of them (the
    baseline's budget): total CPU time / (CPU time per image at the final size x images per final-size epoch x
    ``epochs``), both from this run. Process CPU time still varies with what else the machine runs (the same 32 px
    epoch measured 1.7-3.3 ms per image across the CIFAR-10 grid's runs), and runs of one grid run at different
    loads; this ratio is measured within one run, so it compares curricula on cost alone. None without a final-size
    epoch or CPU times."""
    final = [r for r in rows if r.get("size") == final_size and r.get("train_cpu_time") and r.get("train_images")]
    if not final or epochs <= 0:
        return None
    per_image = sum(r["train_cpu_time"] for r in final) / sum(r["train_images"] for r in final)
    per_epoch = per_image * statistics.fmean(r["train_images"] for r in final)
    return sum(r.get("train_cpu_time", 0.0) for r in rows) / (per_epoch * epochs)


def _run_row(run_dir: str, label: str, seed: int, epochs: int) -> dict[str, Any] | None:
    if not os.path.isfile(os.path.join(run_dir, "summary.json")):
        return None
    rows = read_metrics(run_dir)
    with open(os.path.join(run_dir, "schedule.json")) as f:
        sched = json.load(f)
    last = rows[-1]
    return {
        "curriculum": label, "seed": seed, "epochs": last["epoch"],
        "top1": last["top1"], "ema_top1": last.get("ema_top1"),
        "train_time": last["train_time_total"], "train_cpu_time": sum(r.get("train_cpu_time", 0.0) for r in rows),
        "own_cpu": own_final_epochs(rows, sched["final_size"], epochs),
        "wall_time": last["wall_time"],
        # torch.compile's time (one compilation per stage size), not part of train_time
        "compile_time": sum(r.get("compile_time", 0.0) for r in rows),
        "predicted": sched["predicted_cost"] * sched["baseline_epochs"] / epochs,
        "sizes": "/".join(str(s["size"]) for s in sched["stages"]) if len(sched["stages"]) <= 6 else
        f"{sched['stages'][0]['size']}..{sched['stages'][-1]['size']} ({len(sched['stages'])} stages)",
        "run_dir": run_dir,
    }


def summarize(out_dir: str, entries: Sequence[CompareEntry], seeds: Sequence[int], epochs: int) -> dict[str, Any]:
    """Per-run rows and per-curriculum mean +- std from the finished run directories under ``out_dir``."""
    runs, table = [], []
    for e in entries:
        rows = [r for s in seeds if (r := _run_row(os.path.join(out_dir, e.label, f"seed{s}"), e.label, s, epochs))]
        runs += rows
        stats = {key: _mean_std([r[key] for r in rows]) for key in
                 ("top1", "ema_top1", "train_time", "train_cpu_time", "own_cpu", "compile_time", "predicted")}
        table.append({"curriculum": e.label, "spec": e.spec, "overrides": e.overrides[1:] + e.resolved,
                      "seeds": len(rows), "of": len(seeds), "epochs": rows[0]["epochs"] if rows else None,
                      "sizes": rows[0]["sizes"] if rows else None,
                      **{f"{k}_{w}": v[i] for k, v in stats.items() for i, w in enumerate(("mean", "std"))}})
    ref = next((t for t, e in zip(table, entries) if e.spec == "none" and t["seeds"]), None) or \
        next((t for t in table if t["seeds"]), None)
    for t in table:
        for key, col in (("train_time", "measured"), ("train_cpu_time", "cpu")):
            ok = ref is not None and t[f"{key}_mean"] is not None and ref[f"{key}_mean"]
            t[col] = t[f"{key}_mean"] / ref[f"{key}_mean"] if ok else None
    result = {"reference": ref["curriculum"] if ref else None, "baseline_epochs": epochs, "seeds": list(seeds),
              "curricula": table, "runs": runs}
    result["markdown"] = markdown_table(result)
    return result


def _pm(mean: float | None, std: float | None, spec: str = ".2f") -> str:
    if mean is None:
        return "-"
    return format(mean, spec) + (f" ± {format(std, spec)}" if std is not None else "")


def markdown_table(result: dict[str, Any]) -> str:
    head = ("| curriculum | seeds | epochs | B | top-1 (%) | EMA top-1 (%) | train time (s) | measured | cpu | "
            "cpu (own) | predicted |")
    lines = [head, "|" + "---|" * 11]
    for t in result["curricula"]:
        lines.append(
            f"| {t['curriculum']} | {t['seeds']}/{t['of']} | {t['epochs'] or '-'} | {t['sizes'] or '-'} | "
            f"{_pm(t['top1_mean'], t['top1_std'])} | {_pm(t['ema_top1_mean'], t['ema_top1_std'])} | "
            f"{_pm(t['train_time_mean'], t['train_time_std'], '.0f')} | {_pm(t['measured'], None, '.3f')} | "
            f"{_pm(t['cpu'], None, '.3f')} | {_pm(t.get('own_cpu_mean'), None, '.3f')} | "  # older compare.json: none
            f"{_pm(t['predicted_mean'], None, '.3f')} |")
    lines.append("")
    lines.append(f"mean ± sample std over seeds; measured / cpu: training wall / CPU time vs "
                 f"{result['reference']}; cpu (own): CPU time in the run's own final-size epochs (measured within "
                 f"the run, so another load on the machine cancels) vs {result['baseline_epochs']}; predicted: FLOP "
                 f"estimate vs {result['baseline_epochs']} epochs at the final size")
    compiled = [t for t in result["curricula"] if t.get("compile_time_mean")]
    if compiled:  # a curriculum pays one compilation per stage size: shown, and kept out of the time columns
        lines.append("torch.compile time (s, not in train time): " + ", ".join(
            f"{t['curriculum']} {_pm(t['compile_time_mean'], t['compile_time_std'], '.1f')}" for t in compiled))
    return "\n".join(lines)


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: (" ".join(v) if isinstance(v, list) else v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def _cumulative(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    out, acc = [], 0.0
    for r in rows:
        acc += r.get(key, float("nan"))
        out.append(acc / 60)
    return out


def _plot_accuracy(out_dir: str, result: dict[str, Any], key: str, name: str, what: str) -> str:
    """Top-1 vs cumulative ``key`` (per-epoch seconds in metrics.jsonl): mean over seeds, +- std band."""
    fig, ax = new_figure((7.0, 4.6))
    for t in result["curricula"]:
        curves = [read_metrics(r["run_dir"]) for r in result["runs"] if r["curriculum"] == t["curriculum"]]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        time = np.mean([_cumulative(c[:n], key) for c in curves], axis=0)
        acc = np.array([[r["top1"] for r in c[:n]] for c in curves])
        mean = acc.mean(axis=0)
        line, = ax.plot(time, mean, marker="o", ms=2.5, label=f"{t['curriculum']} (n={len(curves)})")
        if len(curves) > 1:
            std = acc.std(axis=0, ddof=1)
            ax.fill_between(time, mean - std, mean + std, color=line.get_color(), alpha=0.18, lw=0)
    ax.set_xlabel(f"{what} (min, evaluation excluded; mean over seeds)")
    ax.set_ylabel("top-1 at the final size (%)")
    ax.set_title(f"accuracy vs {what} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    lo = [r["top1"] for r in result["runs"]]
    if lo:  # the early epochs are far below: show the part where the curricula differ
        ax.set_ylim(max(0.0, min(lo) - 10.0), min(100.0, max(lo) + 2.0))
    fig.tight_layout()
    path = os.path.join(out_dir, name)
    fig.savefig(path)
    return path


def method_of(label: str) -> str:
    """The method a curriculum label is a budget of: ``none@cost=0.7`` -> ``none``, ``efficienttrain++@cost=0.5`` ->
    ``efficienttrain++`` (the front joins one method's budgets)."""
    return label.split("@", 1)[0]


def front_points(result: dict[str, Any], key: str) -> dict[str, list[tuple[float, float, float, int]]]:
    """Per method, its finished budgets as ``(x, top-1 mean, top-1 std (0 for one seed), seeds)`` sorted by x, where
    x is the curriculum's ``key`` column (``cpu``, ``own_cpu_mean``, ``measured`` or ``predicted_mean``)."""
    out: dict[str, list[tuple[float, float, float, int]]] = {}
    for t in result["curricula"]:
        if t["seeds"] and t.get(key) is not None:
            out.setdefault(method_of(t["curriculum"]), []).append(
                (t[key], t["top1_mean"], t["top1_std"] or 0.0, t["seeds"]))
    return {m: sorted(p) for m, p in out.items()}


def _plot_front(out_dir: str, result: dict[str, Any]) -> str:
    """Final top-1 (mean +- std over seeds) against CPU time relative to the reference, against CPU time in each
    run's own final-size epochs (:func:`own_final_epochs`) and against predicted compute: one line per method through
    its budgets, ordered by compute."""
    fig, axes = new_figure((15.0, 4.4), ncols=3)
    for ax, key, what in ((axes[0], "cpu", f"training CPU time relative to {result['reference']}"),
                          (axes[1], "own_cpu_mean", "CPU time in the run's own final-size epochs / "
                           f"{result['baseline_epochs']}"),
                          (axes[2], "predicted_mean", "predicted compute (FLOPs relative to the baseline)")):
        for method, pts in front_points(result, key).items():
            x, y, err, n = zip(*pts)
            ax.errorbar(x, y, yerr=err, marker="o", ms=4, capsize=3, label=f"{method} (n={min(n)}-{max(n)})"
                        if min(n) != max(n) else f"{method} (n={n[0]})")
        ax.set_xlabel(what)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("final top-1 (%), mean ± std over seeds")
    axes[0].legend(fontsize=8)
    fig.suptitle("accuracy vs compute: one line per method through its budgets")
    fig.tight_layout()
    path = os.path.join(out_dir, "accuracy_vs_compute.png")
    fig.savefig(path)
    return path


def write_outputs(out_dir: str, result: dict[str, Any]) -> list[str]:
    """:data:`COMPARE_FILES` in ``out_dir``."""
    paths = []
    for name, text in (("compare.csv", _csv(result["curricula"])), ("runs.csv", _csv(result["runs"])),
                       ("compare.md", result["markdown"] + "\n"),
                       ("compare.json", json.dumps(result, indent=1))):
        write_text_atomic(os.path.join(out_dir, name), text)
        paths.append(os.path.join(out_dir, name))
    paths.append(_plot_accuracy(out_dir, result, "train_time", "accuracy_vs_time.png", "training wall time"))
    paths.append(_plot_accuracy(out_dir, result, "train_cpu_time", "accuracy_vs_cpu_time.png",
                                "training process CPU time"))
    paths.append(_plot_front(out_dir, result))
    first = {}
    for r in result["runs"]:
        first.setdefault(r["curriculum"], r["run_dir"])
    paths.append(plot_schedules(list(first.values()), os.path.join(out_dir, "schedules.png"), list(first)))
    return paths
