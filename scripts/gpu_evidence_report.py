"""The tables of scripts/gpu_evidence.sh: wall time, top-1 and per-stage throughput against the FLOP prediction.

    python scripts/gpu_evidence_report.py OUT/runs [--output OUT/gpu_evidence.md]

Reads every run below the given folders (an ``etrain compare`` output: ``<grid>/<curriculum>/seed<k>/`` with
``metrics.jsonl`` and ``schedule.json``; ``<grid>`` names the model) and writes two markdown tables:

* runs: epochs done, final top-1 (and EMA), wall and training time, predicted cost (FLOPs) and measured cost
  (training time), both relative to ``none`` of the same grid and seed;
* stages: per stage of each run its size B, epochs, img/s, the measured speed-up (img/s over the reference
  img/s at the final size: the ``none`` run of the same grid and seed, else the run's own final-size stage), the
  predicted speed-up (1 / the stage's relative FLOPs per image) and their ratio (the issue's goal: >= 0.9, so the
  data path does not eat the saving).

Throughput leaves out the run's first epoch when its stage has others (cuDNN autotuning and the allocator's
warm-up fall there); "warm" in the table says so. Plain Python (json only), so it runs wherever the runs are.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["collect_runs", "stage_rows", "run_rows", "report"]


def _read(run_dir: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        with open(os.path.join(run_dir, "schedule.json")) as f:
            schedule = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return {"rows": rows, "schedule": schedule}


def collect_runs(roots: list[str]) -> list[dict[str, Any]]:
    """Every run (``<grid>/<curriculum>/seed<k>``) below ``roots``, sorted by grid, curriculum and seed."""
    runs = []
    for root in roots:
        for dirpath, _, files in os.walk(root):
            if "metrics.jsonl" not in files or "schedule.json" not in files:
                continue
            rel = os.path.relpath(dirpath, root).split(os.sep)
            seed_part = rel[-1]
            if len(rel) < 2 or not seed_part.startswith("seed"):
                continue
            run = _read(dirpath)
            if run is None or not run["rows"]:
                continue
            grid = rel[-3] if len(rel) >= 3 else os.path.basename(os.path.normpath(root))
            run.update(grid=grid, curriculum=rel[-2], seed=int(seed_part[4:]), dir=dirpath)
            runs.append(run)
    return sorted(runs, key=lambda r: (r["grid"], r["curriculum"] != "none", r["curriculum"], r["seed"]))


def _stage_throughput(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Per stage: size, epochs, images and seconds (warm epochs: the run's first epoch left out when its stage has
    others)."""
    out = []
    stages = run["schedule"]["stages"]
    first = run["rows"][0]["epoch"]
    for k, st in enumerate(stages):
        rs = [r for r in run["rows"] if r["stage"] == k]
        if not rs:
            continue
        warm = [r for r in rs if r["epoch"] != first] or rs
        imgs = sum(r["train_images"] for r in warm)
        secs = sum(r["train_time"] for r in warm)
        out.append({"stage": k, "size": st["size"], "epochs": f"{rs[0]['epoch']}-{rs[-1]['epoch']}",
                    "img_s": imgs / max(secs, 1e-12), "relative_flops": st.get("relative_flops"),
                    "warm": len(warm) < len(rs), "train_time": sum(r["train_time"] for r in rs)})
    return out


def _final_rate(run: dict[str, Any]) -> float | None:
    final = run["schedule"].get("final_size")
    rates = [s["img_s"] for s in _stage_throughput(run) if s["size"] == final]
    return rates[-1] if rates else None


def _baseline(runs: list[dict[str, Any]], run: dict[str, Any]) -> dict[str, Any] | None:
    for r in runs:
        if r["grid"] == run["grid"] and r["seed"] == run["seed"] and r["curriculum"] == "none":
            return r
    return None


def stage_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for run in runs:
        base = _baseline(runs, run)
        ref = _final_rate(base) if base is not None else None
        ref_from = "none" if ref is not None else "own"
        if ref is None:
            ref = _final_rate(run)
        for s in _stage_throughput(run):
            measured = s["img_s"] / ref if ref else None
            predicted = 1.0 / s["relative_flops"] if s["relative_flops"] else None
            out.append({"grid": run["grid"], "curriculum": run["curriculum"], "seed": run["seed"], **s,
                        "reference": ref_from, "speedup": measured, "predicted_speedup": predicted,
                        "ratio": measured / predicted if measured is not None and predicted else None})
    return out


def run_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for run in runs:
        rows, sched = run["rows"], run["schedule"]
        last = rows[-1]
        train = sum(r["train_time"] for r in rows)
        base = _baseline(runs, run)
        base_train = sum(r["train_time"] for r in base["rows"]) if base is not None else None
        planned = int(sched.get("epochs", len(rows)))
        # a run's predicted cost is relative to its own baseline (baseline_epochs at the final size: fewer for
        # none@cost=...); put it on the grid's, the none run's
        predicted = sched.get("predicted_cost")
        ours, theirs = sched.get("baseline_epochs"), base["schedule"].get("baseline_epochs") if base else None
        if predicted is not None and ours and theirs:
            predicted = predicted * ours / theirs
        out.append({"grid": run["grid"], "curriculum": run["curriculum"], "seed": run["seed"],
                    "epochs": f"{len(rows)}/{planned}", "finished": len(rows) == planned,
                    "top1": last.get("top1"), "ema_top1": last.get("ema_top1"), "wall_time": last.get("wall_time"),
                    "train_time": train, "predicted_cost": predicted,
                    "measured_cost": train / base_train if base_train else None})
    return out


def _f(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def report(roots: list[str]) -> str:
    runs = collect_runs(roots)
    if not runs:
        return "no runs found under " + ", ".join(roots)
    lines = ["### Runs", "",
             "| grid | curriculum | seed | epochs | top-1 % | EMA top-1 % | wall s | train s | predicted cost | "
             "measured cost |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in run_rows(runs):
        lines.append(f"| {r['grid']} | {r['curriculum']} | {r['seed']} | {r['epochs']} | {_f(r['top1'], '.2f')} | "
                     f"{_f(r['ema_top1'], '.2f')} | {_f(r['wall_time'], '.1f')} | {_f(r['train_time'], '.1f')} | "
                     f"{_f(r['predicted_cost'], '.3f')} | {_f(r['measured_cost'], '.3f')} |")
    lines += ["", "### Stages (img/s: warm epochs; speed-up: img/s over the reference img/s at the final size)", "",
              "| grid | curriculum | seed | stage | B | epochs | train s | img/s | speed-up measured | predicted | "
              "measured / predicted |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in stage_rows(runs):
        ref = "" if s["reference"] == "none" else " (own)"
        lines.append(f"| {s['grid']} | {s['curriculum']} | {s['seed']} | {s['stage']} | {s['size']} | {s['epochs']} | "
                     f"{s['train_time']:.1f} | {s['img_s']:.0f} | {_f(s['speedup'], '.3f')}{ref} | "
                     f"{_f(s['predicted_speedup'], '.3f')} | {_f(s['ratio'], '.3f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("roots", nargs="+", help="etrain compare output folders (or a folder above them)")
    ap.add_argument("--output", help="also write the tables to this file")
    args = ap.parse_args(argv)
    text = report(args.roots)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
