"""Stage tables: a schedule's stages with their predicted cost, as rows (:func:`stage_costs`) or text
(:func:`schedule_table`, what ``etrain schedule`` and the trainer print)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .schedules import Schedule, Stage

__all__ = ["StageCost", "stage_costs", "schedule_table"]


@dataclass
class StageCost:
    """Predicted cost of one stage: train FLOPs per image at its size relative to the final size."""

    stage: Stage
    flops_per_image: float
    relative_flops: float  # per image, vs the final size
    compute: float  # stage share of the baseline run's compute


def stage_costs(schedule: Schedule, flops_by_size: Mapping[int, float]) -> tuple[list[StageCost], float]:
    """Per-stage costs and the run's total compute relative to the baseline (``none`` for ``baseline`` epochs)."""
    ref = flops_by_size[schedule.final_size]
    base = ref * schedule.baseline
    rows = []
    for s in schedule.stages:
        f = flops_by_size[s.size]
        rows.append(StageCost(s, f, f / ref, f * s.epochs / base))
    return rows, sum(r.compute for r in rows)


def schedule_table(schedule: Schedule, flops_by_size: Mapping[int, float] | None = None) -> str:
    """Human-readable stage table; with ``flops_by_size`` (train FLOPs per image) the predicted compute too."""
    lines = [
        f"curriculum {schedule.name}: {schedule.epochs} epochs, final size {schedule.final_size}, "
        f"RandAugment m: {_mag_desc(schedule)}"
    ]
    show_replay = any(s.replay > 1 for s in schedule.stages)
    show_batch = any(s.batch_scale != 1.0 for s in schedule.stages)
    head = f"{'stage':>5} {'epochs':>11} {'B':>5} {'m':>11}" + (f" {'replay':>6}" if show_replay else "") \
        + (f" {'batch x':>7}" if show_batch else "")
    if flops_by_size:
        head += f" {'GFLOP/img':>10} {'rel/img':>8} {'compute':>8}"
        rows, total = stage_costs(schedule, flops_by_size)
    else:
        rows, total = None, None
    lines.append(head)
    for i, s in enumerate(schedule.stages):  # magnitude over the stage's epoch range (it changes every step)
        m_lo = schedule.magnitude_at(s.start / schedule.epochs, s.start)
        m_hi = schedule.magnitude_at(s.end / schedule.epochs, s.end - 1)
        m = f"{m_lo:.1f}" if abs(m_hi - m_lo) < 1e-9 else f"{m_lo:.1f}-{m_hi:.1f}"
        line = f"{i:>5} {f'{s.start + 1}-{s.end}':>11} {s.size:>5} {m:>11}" + (f" {s.replay:>6}" if show_replay else "") \
            + (f" {s.batch_scale:>7.3g}" if show_batch else "")
        if rows:
            r = rows[i]
            line += f" {r.flops_per_image / 1e9:>10.4f} {r.relative_flops:>8.3f} {r.compute:>8.3f}"
        lines.append(line)
    if total is not None:
        lines.append(
            f"predicted compute vs baseline ({schedule.baseline} epochs at {schedule.final_size}): "
            f"{total:.3f} ({1 / total:.2f}x speed-up); pixel estimate {schedule.relative_pixels():.3f}"
        )
    else:
        lines.append(f"pixel-count estimate of compute vs baseline: {schedule.relative_pixels():.3f}")
    return "\n".join(lines)


def _mag_desc(s: Schedule) -> str:
    return {"linear": f"{s.m0:g}*t/T per step", "constant": f"{s.m0:g} constant", "stage": "per stage"}[s.magnitude]
