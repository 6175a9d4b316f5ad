#!/usr/bin/env python
"""The tables of docs/mae.md from a ``scripts/mae_demo.sh`` output directory (Markdown on stdout).

    python scripts/mae_demo_table.py runs/mae_demo
"""

from __future__ import annotations

import json
import os
import sys

from efficienttrain_ext.engine.metrics import read_metrics


def _run(out: str, name: str) -> dict:
    d = os.path.join(out, name)
    rows = read_metrics(d)
    with open(os.path.join(d, "schedule.json")) as f:
        sched = json.load(f)
    return dict(rows=rows, last=rows[-1], predicted=sched["predicted_cost"],
                sizes="/".join(str(st["size"]) for st in sched["stages"]),
                train=sum(r["train_time"] for r in rows), cpu=sum(r["train_cpu_time"] for r in rows),
                wall=rows[-1]["wall_time"])


def _top1(r: dict) -> str:
    last = r["last"]
    ema = f" / {last['ema_top1']:.2f}" if "ema_top1" in last else ""
    return f"{last['top1']:.2f}{ema}"


def main(out: str) -> None:
    pre = {c: _run(out, f"mae-{c}") for c in ("efficienttrain", "none")}
    base = pre["none"]
    print("| pre-training | B | train s (wall) | train CPU s | predicted cost | measured cost (CPU / wall) "
          "| final val_loss | fine-tune top-1 (model / EMA) |")
    print("|---|---|---|---|---|---|---|---|")
    for c, r in pre.items():
        ft = _run(out, f"ft-mae-{c}")
        print(f"| MAE `{c}` | {r['sizes']} | {r['train']:.0f} | {r['cpu']:.0f} | {r['predicted']:.3f} "
              f"| {r['cpu'] / base['cpu']:.3f} / {r['train'] / base['train']:.3f} | {r['last']['val_loss']:.4f} "
              f"| {_top1(ft)} |")
    scratch = _run(out, "sup-none")
    print(f"| none (from scratch) | - | - | - | - | - | - | {_top1(scratch)} |")
    print()
    print("| supervised source | B | source top-1 | source train CPU s | predicted / measured (CPU) cost "
          "| photo-patches top-1 (model / EMA; seed 0; seed 1) |")
    print("|---|---|---|---|---|---|")
    sup = {c: _run(out, f"sup-{c}") for c in ("efficienttrain", "none")}
    for c, r in sup.items():
        seeds = [_top1(_run(out, name)) for name in (f"transfer-sup-{c}", f"transfer-sup-{c}-seed1")
                 if os.path.isdir(os.path.join(out, name))]
        print(f"| `{c}` | {r['sizes']} | {_top1(r)} | {r['cpu']:.1f} | {r['predicted']:.3f} / "
              f"{r['cpu'] / sup['none']['cpu']:.3f} | {'; '.join(seeds)} |")
    if os.path.isdir(os.path.join(out, "photo-scratch")):
        print(f"| random init | - | - | - | - | {_top1(_run(out, 'photo-scratch'))} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/mae_demo")
