#!/usr/bin/env python
"""Predicted compute of the curricula for every backbone family, with torch's stock FLOP counter and with
efficienttrain_ext's (grouped-convolution backward and the CPU attention kernel counted), as ``etrain schedule``
prints it.

    python scripts/backbone_costs.py [-o docs/data/backbone_costs] [--models resnet50 convnext_tiny ...]

Counts run on the CPU at 224 (forward + backward, batch 2). Writes OUT.csv and OUT.json and prints a Markdown
table (docs/backbones.md holds the one measured).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

import efficienttrain_ext.models  # noqa: F401  (registers cswin_*)
from efficienttrain_ext.curriculum import plan, stage_costs
from efficienttrain_ext.curriculum.flops import flop_counter, flops_by_size

MODELS = ["resnet50", "convnext_tiny", "deit_small_patch16_224", "swin_tiny_patch4_window7_224", "pvt_v2_b2",
          "caformer_s18", "cswin_tiny_224"]
CURRICULA = ["efficienttrain", "efficienttrain++"]
COUNTERS = {"torch": lambda: FlopCounterMode(display=False), "efficienttrain_ext": flop_counter}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--out", default="docs/data/backbone_costs")
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--epochs", type=int, default=300)
    args = p.parse_args()
    torch.manual_seed(0)
    rows = []
    bar = tqdm(total=len(args.models) * len(COUNTERS), desc="counting", file=sys.stderr)
    for name in args.models:
        model = timm.create_model(name)
        schedules = {c: plan(c, epochs=args.epochs, final_size=224, model=model) for c in CURRICULA}
        sizes = sorted({s.size for sch in schedules.values() for s in sch.stages} | {224})
        counts = {}
        for counter_name, counter in COUNTERS.items():
            counts[counter_name] = flops_by_size(model, sizes, counter=counter)
            bar.update(1)
        for c, sch in schedules.items():
            row = {"model": name, "curriculum": c, "stage_sizes": "/".join(str(s.size) for s in sch.stages)}
            for counter_name, flops in counts.items():
                _, total = stage_costs(sch, flops)
                row[f"train_gflop_224_{counter_name}"] = round(flops[224] / 1e9, 3)
                row[f"compute_{counter_name}"] = round(total, 4)
            rows.append(row)
        del model
    bar.close()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(args.out + ".json", "w") as f:
        json.dump({"torch": torch.__version__, "timm": timm.__version__, "epochs": args.epochs, "rows": rows}, f,
                  indent=1)
    print("| model | curriculum | stage sizes | train GFLOP/img at 224, torch / ours | predicted compute, torch / "
          "ours | speed-up, torch / ours |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        a, b = r["compute_torch"], r["compute_efficienttrain_ext"]
        print(f"| {r['model']} | {r['curriculum']} | {r['stage_sizes']} | {r['train_gflop_224_torch']:.2f} / "
              f"{r['train_gflop_224_efficienttrain_ext']:.2f} | {a:.3f} / {b:.3f} | {1 / a:.2f}x / {1 / b:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
