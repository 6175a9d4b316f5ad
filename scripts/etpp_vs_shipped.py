"""Experiment (docs/search.md): `etrain search --algorithm etpp` on a small Fashion-MNIST proxy, compared at the same
budget with EfficientTrain++'s shipped CNN list [96]*2 + [160]*4 + [224]*4 scaled to the proxy's final size.

Scaling: the 10 equal-compute stages are taken in pairs (5 stages: 96, 160, 160, 224, 224), and the sizes are
multiplied by v/224 and rounded to the model's sizes (even for resnet10t): at v = 32, 14-22-22-32-32; the search's
candidates are 96, 128, 160, 192 scaled the same way (14, 18, 22, 28). Every schedule runs stage k for
C/5 / c(B_k) epochs (c: the model's train-FLOP ratio, --cost flops) in whole epochs.

    PYTHONPATH=. python scripts/etpp_vs_shipped.py --output runs/etpp-vs-shipped

Trials and runs already in --output are reused, so it can be stopped and started again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import yaml

from efficienttrain_ext.config import apply_overrides, load_config
from efficienttrain_ext.curriculum.flops import flops_by_size
from efficienttrain_ext.curriculum.sizes import size_rule_for_model
from efficienttrain_ext.engine.model_factory import create_model
from efficienttrain_ext.search import etpp_schedule_spec, etpp_stage_epochs

SHIPPED_224 = (96, 160, 160, 224, 224)  # ETPP_SIZES["cnn"] in pairs of equal-compute stages
CANDIDATES_224 = (96, 128, 160, 192)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="runs/etpp-vs-shipped")
    ap.add_argument("--final-size", type=int, default=32)
    ap.add_argument("--budget", type=int, default=10, help="C, final-size epochs")
    ap.add_argument("--search-seeds", default="0,1")
    ap.add_argument("--eval-seeds", default="0,1,2")
    args = ap.parse_args()
    v, budget = args.final_size, args.budget
    common = ["-c", "configs/fashion_mnist_demo.yaml", "--final-size", str(v), "--epochs", str(budget),
              "--batch-size", "64", "--workers", "0", "--output", args.output,
              "--set", "data.train_subset=1000", "--set", "data.val_subset=1000", "--set", "train.ema=false",
              "--set", "train.eval_at_stage_size=false", "--set", "train.progress=false", "--set", "train.threads=1"]
    cfg = apply_overrides(load_config("configs/fashion_mnist_demo.yaml"), [f"data.final_size={v}"])
    model = create_model(cfg, 10)
    rule = size_rule_for_model(model)
    scale = lambda sizes: tuple(min(rule.round(b * v / 224), v) for b in sizes)  # noqa: E731
    shipped, cands = scale(SHIPPED_224), scale(CANDIDATES_224)
    flops = flops_by_size(model, list(cands) + [v])
    rel = {b: f / flops[v] for b, f in flops.items()}
    search_dir = os.path.join(args.output, "etpp-search")
    subprocess.run([sys.executable, "-m", "efficienttrain_ext", "search", *common, "--name", "etpp-search",
                    "--algorithm", "etpp", "--stages", str(len(shipped)), "--candidates", ",".join(map(str, cands)),
                    "--cost", "flops", "--seeds", args.search_seeds], check=True)
    with open(os.path.join(search_dir, "search.json")) as f:
        best = tuple(json.load(f)["best_sizes"])
    base = (v,) * len(shipped)
    plan = {"shipped": shipped, "searched": best, "baseline": base}
    rows = {}
    for name, sizes in plan.items():
        sched = os.path.join(args.output, f"{name}.yaml")
        spec = etpp_schedule_spec(sizes, etpp_stage_epochs(sizes, v, budget, rel, whole_epochs=True), budget,
                                  cfg.curriculum.m0, name)
        with open(sched, "w") as f:
            yaml.safe_dump(spec, f, sort_keys=False)
        for seed in map(int, args.eval_seeds.split(",")):
            d = os.path.join(search_dir, f"trial-etpp-{'_'.join(map(str, sizes))}-seed{seed}")
            if not os.path.exists(os.path.join(d, "summary.json")):  # not a trial of the search: train it
                d = os.path.join(args.output, f"{name}-seed{seed}")
                if not os.path.exists(os.path.join(d, "summary.json")):
                    subprocess.run([sys.executable, "-m", "efficienttrain_ext", "train", *common, "--curriculum",
                                    sched, "--seed", str(seed), "--name", os.path.basename(d), "--overwrite"],
                                   check=True, stdout=subprocess.DEVNULL)
            with open(os.path.join(d, "summary.json")) as f:
                s = json.load(f)
            with open(os.path.join(d, "schedule.json")) as f:
                stages = json.load(f)["stages"]
            rows[f"{name}-seed{seed}"] = dict(sizes=list(sizes), top1=s["final"]["top1"],
                                              predicted_cost=s["predicted_cost"],
                                              epochs=[st["end"] - st["start"] for st in stages])
    with open(os.path.join(args.output, "etpp_vs_shipped.json"), "w") as f:
        json.dump(rows, f, indent=1)
    for name, sizes in plan.items():
        accs = [r["top1"] for k, r in rows.items() if k.startswith(name + "-")]
        cost = next(r["predicted_cost"] for k, r in rows.items() if k.startswith(name + "-"))
        print(f"{name:>8} {'-'.join(map(str, sizes)):>16}: top1 {statistics.fmean(accs):.2f} +- "
              f"{statistics.stdev(accs) if len(accs) > 1 else 0.0:.2f} over {len(accs)} seeds {accs}, "
              f"predicted compute {cost:.3f}")


if __name__ == "__main__":
    main()
