"""``etrain plot``: accuracy vs training wall time (paper Fig. 7 style) and the schedules, as PNG.

The time axis is the cumulative wall time of the training epochs, without evaluation: a curriculum run also
evaluates at its current size B, which the baseline does not, and evaluation is not what the curriculum saves.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

from matplotlib.figure import Figure

from ..curriculum.schedules import Schedule
from .metrics import read_metrics

__all__ = ["plot_runs", "plot_schedules", "plot_lr", "compare_table", "new_figure"]


def new_figure(figsize=(6.4, 4.4), nrows: int = 1, sharex: bool = False, ncols: int = 1):
    """A matplotlib Figure and its axes through the object API (no pyplot: no global figure state, no display)."""
    fig = Figure(figsize=figsize, dpi=120)
    return fig, fig.subplots(nrows, ncols, sharex=sharex)


def _label(run_dir: str) -> str:
    try:
        with open(os.path.join(run_dir, "schedule.json")) as f:
            name = json.load(f)["name"]
    except (OSError, KeyError, ValueError):
        name = "?"
    path = os.path.normpath(run_dir)
    base = os.path.basename(path)
    if base.startswith("seed"):  # an `etrain compare` run, CURRICULUM_SPEC/seedN: the spec tells variants apart
        return f"{os.path.basename(os.path.dirname(path))} {base}"
    return f"{base} ({name})"


def _metric(run_dir: str) -> str:
    """The run's headline metric (its task's ``primary``, recorded in schedule.json; top1 for older runs)."""
    try:
        with open(os.path.join(run_dir, "schedule.json")) as f:
            return str(json.load(f).get("primary_metric", "top1"))
    except (OSError, ValueError):
        return "top1"


def _metric_label(metric: str) -> str:
    return "top-1 accuracy at final size (%)" if metric == "top1" else f"{metric} at final size"


def _schedule(run_dir: str) -> Schedule | None:
    try:
        with open(os.path.join(run_dir, "schedule.json")) as f:
            return Schedule.from_dict(json.load(f))
    except (OSError, KeyError, ValueError):
        return None


def plot_runs(runs: Sequence[str], out_dir: str | None = None) -> list[str]:
    """``accuracy_vs_time.png``, ``schedule.png`` and ``lr.png`` for the given run directories."""
    data = [(r, read_metrics(r)) for r in runs]
    out_dir = out_dir or runs[0]
    os.makedirs(out_dir, exist_ok=True)

    metrics = list(dict.fromkeys(_metric(run) for run in runs))
    fig, axes = new_figure((6.4, 4.4 * len(metrics)), nrows=len(metrics))
    axes = list(axes) if len(metrics) > 1 else [axes]
    for run, rows in data:
        metric = _metric(run)
        ax = axes[metrics.index(metric)]
        t = [r["train_time_total"] / 60 for r in rows]
        line, = ax.plot(t, [r.get(metric) for r in rows], marker="o", ms=3, label=_label(run))
        if any(f"ema_{metric}" in r for r in rows):
            ax.plot(t, [r.get(f"ema_{metric}") for r in rows], ls=":", color=line.get_color(), label="  EMA")
    for metric, ax in zip(metrics, axes):
        ax.set_xlabel("training wall time (min, evaluation excluded)")
        ax.set_ylabel(_metric_label(metric))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("accuracy vs training time" if metrics == ["top1"] else "validation metric vs training time")
    fig.tight_layout()
    acc_path = os.path.join(out_dir, "accuracy_vs_time.png")
    fig.savefig(acc_path)

    sched_path = plot_schedules(runs, os.path.join(out_dir, "schedule.png"))
    return [acc_path, sched_path, plot_lr(data, os.path.join(out_dir, "lr.png"))]


def plot_lr(data: Sequence[tuple[str, list[dict]]], path: str) -> str:
    """The learning rate at each epoch's end, per run (``(run, metrics rows)`` pairs), e.g. to see
    ``optim.lr_mode: authors``' restarts against one continuous cosine."""
    fig, ax = new_figure((6.4, 3.6))
    for run, rows in data:
        ax.plot([r["epoch"] for r in rows], [r.get("lr") for r in rows], marker="o", ms=2, label=_label(run))
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate (epoch end)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_schedules(runs: Sequence[str], path: str, labels: Sequence[str] | None = None) -> str:
    """Input size B and RandAugment m over the epochs of each run's ``schedule.json``, written to ``path``
    (``labels``: one legend entry per run; default: the run directory and curriculum names)."""
    fig, (ax_b, ax_m) = new_figure((6.4, 5.0), nrows=2, sharex=True)
    for i, run in enumerate(runs):
        sched = _schedule(run)
        label = labels[i] if labels is not None else _label(run)
        if sched is None:
            continue
        x = [st.start for st in sched.stages] + [sched.epochs]
        ax_b.step(x, [st.size for st in sched.stages] + [sched.stages[-1].size], where="post", label=label)
        steps = 200  # m(t) drawn at fine resolution: it changes every optimisation step
        t = [sched.epochs * i / steps for i in range(steps + 1)]
        ax_m.plot(t, [sched.magnitude_at(i / steps) for i in range(steps + 1)], label=label)
    ax_b.set_ylabel("input size B")
    ax_b.grid(alpha=0.3)
    ax_b.legend(fontsize=8)
    ax_m.set_ylabel("RandAugment m")
    ax_m.set_xlabel("epochs trained")
    ax_m.grid(alpha=0.3)
    fig.suptitle("schedule")
    fig.tight_layout()
    fig.savefig(path)
    return path


def compare_table(runs: Sequence[str]) -> str:
    """Final accuracy, training and wall time of each run, and each run's training time relative to the first."""
    lines = [f"{'run':<40} {'metric':>16} {'ema':>7} {'train s':>9} {'wall s':>9} {'train/first':>11} "
             f"{'cpu/first':>9}"]
    cpu_ref = None
    ref = None
    for run in runs:
        rows = read_metrics(run)
        if not rows:
            continue
        last = rows[-1]
        ref = ref or last["train_time_total"]
        cpu = sum(r.get("train_cpu_time", float("nan")) for r in rows)
        cpu_ref = cpu_ref or cpu
        metric = _metric(run)
        spec = ".2f" if metric.startswith("top") else ".4f"
        ema = last.get(f"ema_{metric}")
        shown = f"{metric} {format(last[metric], spec)}"
        lines.append(f"{_label(run)[:40]:<40} {shown:>16} {'-' if ema is None else format(ema, spec):>7} "
                     f"{last['train_time_total']:>9.1f} {last['wall_time']:>9.1f} {last['train_time_total'] / ref:>11.3f} "
                     f"{cpu / cpu_ref:>9.3f}")
    return "\n".join(lines)
