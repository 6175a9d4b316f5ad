"""The end-of-run summary: per-stage measured throughput and cost next to the FLOP prediction."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

__all__ = ["summary_table"]


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def summary_table(rows: Sequence[Mapping[str, Any]], stages: Iterable[Mapping[str, Any]],
                  predicted_total: float | None, final_size: int, metric: str = "top1",
                  higher_is_better: bool = True) -> str:
    """Per-stage measured throughput and cost next to the FLOP prediction, then the run's totals.

    Measured relative cost of a stage = its time per image / the time per image at the final size (from the
    run's final-size stage when it has one). The run's measured cost vs the baseline is then the sum over
    stages of images x time per image, divided by all images at the final-size rate.
    """
    if not rows:
        return "no epochs were trained"
    stages = list(stages)
    lines = [f"{'stage':>5} {'epochs':>9} {'B':>5} {'img/s':>9} {'time s':>9} {'pred/img':>9} {'meas/img':>9}"]
    per_stage = []
    for i, st in enumerate(stages):
        rs = [r for r in rows if r["stage"] == i]
        if not rs:
            continue
        # rates from the images whose time train_time holds: steps that compiled are timed apart, so their images
        # count in neither (older rows have no timed_images: all images)
        imgs = sum(r.get("timed_images", r["train_images"]) for r in rs)
        secs = sum(r["train_time"] for r in rs)
        per_stage.append((i, st, rs, imgs, secs, sum(r["train_images"] for r in rs)))
    final = [p for p in per_stage if p[1]["size"] == final_size]
    ref_spi = (final[-1][4] / max(final[-1][3], 1)) if final else None
    meas_total_time = sum(p[4] for p in per_stage)
    total_imgs = sum(p[5] for p in per_stage)
    # every image trained at its stage's measured time per image (= train time when nothing compiled)
    est_total_time = sum(all_imgs * secs / max(imgs, 1) for _, _, _, imgs, secs, all_imgs in per_stage)
    for i, st, rs, imgs, secs, _ in per_stage:
        spi = secs / max(imgs, 1)
        epochs = f"{rs[0]['epoch']}-{rs[-1]['epoch']}"
        meas = spi / ref_spi if ref_spi else None
        lines.append(
            f"{i:>5} {epochs:>9} {st['size']:>5} {imgs / max(secs, 1e-9):>9.1f} "
            f"{secs:>9.1f} {_fmt(st.get('relative_flops'), '.3f'):>9} {_fmt(meas, '.3f'):>9}"
        )
    last = rows[-1]
    compile_total = sum(r.get("compile_time", 0.0) for r in rows)
    unit, spec = ("%", ".2f") if metric.startswith("top") else ("", ".4f")
    values = [r[metric] for r in rows if r.get(metric) is not None]
    best = (max if higher_is_better else min)(values) if values else None
    lines.append(
        f"final: {metric} {_fmt(last.get(metric), spec)}{unit}"
        + (f", EMA {metric} {_fmt(last.get('ema_' + metric), spec)}{unit}"
           if last.get("ema_" + metric) is not None else "")
        + f", best {metric} {_fmt(best, spec)}{unit}"
        + f", train time {meas_total_time:.1f} s, wall time {last['wall_time']:.1f} s"
        + (f", torch.compile {compile_total:.1f} s (not in train time)" if compile_total else "")
    )
    if ref_spi:
        baseline_epochs = stages[0].get("baseline_epochs") if stages else None
        images_per_epoch = total_imgs / max(len(rows), 1)
        base_imgs = images_per_epoch * (baseline_epochs or len(rows))
        measured = est_total_time / (base_imgs * ref_spi)
        lines.append(
            f"cost vs baseline: predicted {_fmt(predicted_total, '.3f')} (FLOPs), measured {measured:.3f} "
            f"(time per image at each size vs at {final_size})"
        )
    if last.get("skipped_images"):
        lines.append(f"skipped {last['skipped_images']} unreadable images")
    return "\n".join(lines)
