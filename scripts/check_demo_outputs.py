#!/usr/bin/env python
"""Check that `bash scripts/demo.sh` finished: every run of its `etrain compare` complete, tables and plots written.

    bash scripts/demo.sh [ARGS] 2>&1 | tee demo.log
    python scripts/check_demo_outputs.py --out runs/demo --log demo.log

This file is the one place that knows what the demo produces (.ci/run calls it): update the constants below
together with scripts/demo.sh. Exit status 0 when everything is there, 1 with a list of what is missing.
Standard library + pyyaml only, so it runs with the venv's python or any python that has pyyaml.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys

# run directory (OUT/<curriculum spec>/seed<k>, etrain compare) -> the curriculum it must have been trained with;
# scripts/demo.sh compares these three specs with --seeds 0
RUNS = {"efficienttrain/seed0": "efficienttrain", "none/seed0": "none", "none@cost=efficienttrain/seed0": "none"}
# files every finished run directory holds (summary.* are written only after the last epoch)
RUN_FILES = ("config.yaml", "schedule.json", "metrics.jsonl", "metrics.csv", "summary.txt", "summary.json", "last.pt")
# `etrain compare` writes these into OUT (efficienttrain_ext/engine/compare.py COMPARE_FILES)...
PLOTS = ("accuracy_vs_time.png", "accuracy_vs_cpu_time.png", "accuracy_vs_compute.png", "schedules.png")
TABLES = ("compare.csv", "compare.md", "compare.json", "runs.csv")
# ...and prints the Markdown table (compare.py markdown_table): this header, then one row per curriculum
TABLE_HEADER = re.compile(r"^\|\s*curriculum\s*\|\s*seeds\s*\|\s*epochs\s*\|")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_run(run_dir: str, curriculum: str) -> list[str]:
    import yaml

    problems = [f"{run_dir}: missing or empty {name}" for name in RUN_FILES
                if not os.path.isfile(os.path.join(run_dir, name)) or os.path.getsize(os.path.join(run_dir, name)) == 0]
    if problems:
        return problems
    with open(os.path.join(run_dir, "config.yaml")) as f:
        epochs = yaml.safe_load(f)["train"]["epochs"]
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    got = [r.get("epoch") for r in rows]
    if got != list(range(1, epochs + 1)):
        problems.append(f"{run_dir}: metrics.jsonl has epochs {got}, the run was configured for {epochs}")
    final = summary.get("final", {})
    if final.get("epoch") != epochs:
        problems.append(f"{run_dir}: summary.json final epoch {final.get('epoch')} != {epochs} (not finished)")
    if not isinstance(final.get("top1"), (int, float)) or not math.isfinite(final["top1"]):
        problems.append(f"{run_dir}: summary.json has no finite final top1 ({final.get('top1')!r})")
    if summary.get("curriculum") != curriculum:
        problems.append(f"{run_dir}: trained with curriculum {summary.get('curriculum')!r}, expected {curriculum!r}")
    return problems


def check_plots(out: str) -> list[str]:
    problems = []
    finished = [os.path.getmtime(p) for run in RUNS if os.path.isfile(p := os.path.join(out, run, "summary.json"))]
    for name in PLOTS:
        path = os.path.join(out, name)
        if not os.path.isfile(path):
            problems.append(f"missing plot {path}")
            continue
        with open(path, "rb") as f:
            head = f.read(8)
        if head != PNG_MAGIC or os.path.getsize(path) < 2048:
            problems.append(f"{path} is not a plot (PNG signature {head!r}, {os.path.getsize(path)} bytes)")
        if finished and os.path.getmtime(path) < max(finished):
            problems.append(f"{path} is older than the runs (left from an earlier demo?)")
    return problems


def _curricula() -> list[str]:
    return list(dict.fromkeys(run.split("/")[0] for run in RUNS))


def check_tables(out: str) -> list[str]:
    problems = [f"missing or empty {os.path.join(out, name)}" for name in TABLES
                if not os.path.isfile(os.path.join(out, name)) or os.path.getsize(os.path.join(out, name)) == 0]
    if problems:
        return problems
    with open(os.path.join(out, "compare.json")) as f:
        rows = {r["curriculum"]: r for r in json.load(f).get("curricula", [])}
    for label in _curricula():
        row = rows.get(label)
        if row is None:
            problems.append(f"{out}/compare.json: no row for {label}")
        elif row.get("seeds") != row.get("of") or not isinstance(row.get("top1_mean"), (int, float)):
            problems.append(f"{out}/compare.json: {label} has {row.get('seeds')} of {row.get('of')} seeds finished "
                            f"(top-1 {row.get('top1_mean')!r})")
    return problems


def check_table(log: str) -> list[str]:
    with open(log, errors="replace") as f:
        lines = [line.strip() for line in f]
    heads = [i for i, line in enumerate(lines) if TABLE_HEADER.match(line)]
    if not heads:
        return [f"{log}: no comparison table (header like '| curriculum | seeds | epochs | ...') in the demo output"]
    rows = {}
    for line in lines[heads[-1] + 2:]:  # after the header and its |---| line
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells
    problems = []
    for label in _curricula():
        if label not in rows:
            problems.append(f"{log}: comparison table has no row for {label} (rows: {sorted(rows)})")
        elif len(rows[label]) < 5 or not re.match(r"^\d+(\.\d+)?", rows[label][4]):
            problems.append(f"{log}: comparison row of {label} has no top-1 ({' | '.join(rows[label])})")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/demo", help="the demo's output directory (its OUT; default runs/demo)")
    p.add_argument("--log", required=True, help="the demo's captured output (it holds the comparison table)")
    args = p.parse_args(argv)
    problems = []
    for run, curriculum in RUNS.items():
        problems += check_run(os.path.join(args.out, run), curriculum)
    problems += check_plots(args.out)
    problems += check_tables(args.out)
    problems += check_table(args.log)
    if problems:
        print("demo outputs: FAILED", *problems, sep="\n  ", file=sys.stderr)
        return 1
    print(f"demo outputs: ok ({', '.join(RUNS)} finished; {', '.join(TABLES + PLOTS)} written; comparison table "
          "printed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
