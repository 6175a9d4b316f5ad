"""Model-step benchmark: does a training step's model work follow its FLOPs at every stage size of a curriculum?

For each model, each distinct input size of its curriculum schedule, and each mode (eager, channels_last,
compile, compile+channels_last), it times the model step (forward under autocast, label-smoothed cross entropy,
backward, gradient clipping, AdamW with the run's kernel choice ``optim.fused: auto``) on random batches already on
the device. It leaves out what the trainer's step adds around that: the EMA update and the device batch path
(RandAugment, random erasing, the low-frequency crop, Mixup/CutMix); a run's ``img_s`` includes them. Each cell
times ``--steps`` steps ``--repeats`` times: ``ms_per_step`` is the median repeat, ``ms_min`` the fastest, and img/s
follows the median. It reports, against the final size in the same mode,

* ``time_ratio``: measured time per image at B / at the final size;
* ``flop_ratio``: predicted train FLOPs per image at B / at the final size (efficienttrain_ext.curriculum.flops);
* ``realised``: ``flop_ratio / time_ratio``, the measured speed-up over the predicted one (1.0: wall time follows
  FLOPs; the goal on a GPU is >= 0.9 with compile).

The first step at each size is timed apart (``first_step_s``: with compile, it holds the compilation). A table is
printed (markdown), and ``OUT/bench_step.csv`` plus ``OUT/bench_step.png`` (matplotlib, when installed) are written.

Rows are written to the CSV as they come (a run stopped from outside keeps them), and ``--budget-s`` skips the
cells that would end after it (each compile cell holds one compilation: about a minute for a ResNet-50).

GPU, the papers' sizes (ResNet-50 and DeiT-S on EfficientTrain's 160/192/224 schedule, bf16 autocast):
    python scripts/bench_step.py --device cuda --models resnet50,deit_small --batch 128 --out bench_step_gpu
    ... --modes eager,compile,channels_last --steps 10 --warmup 2 --budget-s 130   # about 2.5 minutes
CPU, small models and sizes (the table in docs/training.md):
    python scripts/bench_step.py --device cpu --models resnet10t,deit_tiny --final-size 64 --batch 16 --steps 4
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import statistics
import sys
import time
from typing import Iterator

import timm
import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from timm.utils import dispatch_clip_grad

from efficienttrain_ext.curriculum import plan as curriculum_plan
from efficienttrain_ext.curriculum.flops import flops_by_size
from efficienttrain_ext.curriculum.switching import switch_input_size
from efficienttrain_ext.engine.acceleration import (compile_module, optimizer_kernel_options, recompile_room,
                                                    to_channels_last)

ALIASES = {"deit_small": "deit_small_patch16_224", "deit_tiny": "deit_tiny_patch16_224",
           "swin_tiny": "swin_tiny_patch4_window7_224"}
MODES = ("eager", "channels_last", "compile", "compile+channels_last")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--models", default="resnet50,convnext_tiny,deit_small,swin_tiny",
                   help="comma-separated timm names (aliases: deit_small, deit_tiny, swin_tiny)")
    p.add_argument("--modes", default="eager,channels_last,compile", help=f"comma-separated of {', '.join(MODES)}")
    p.add_argument("--curriculum", default="efficienttrain", help="whose stage sizes (default efficienttrain)")
    p.add_argument("--final-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed steps per cell")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after the first (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of --steps steps per cell; the median and the "
                   "fastest are reported (default 3)")
    p.add_argument("--amp", default="auto", choices=["auto", "off", "bf16"], help="auto: bf16 on CUDA, off on CPU")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--budget-s", type=float, default=None,
                   help="skip the cells that would end after this many seconds, judged by the previous cell of the "
                        "same mode (reported as skipped)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default="outputs/bench_step", help="directory for bench_step.csv / .png")
    args = p.parse_args(argv)
    args.models = [ALIASES.get(m, m) for m in args.models.split(",") if m]
    args.modes = [m for m in args.modes.split(",") if m]
    args.cell_seconds = {}  # mode -> seconds of its last cell (the budget's estimate of the next)
    bad = [m for m in args.modes if m not in MODES]
    if bad:
        p.error(f"unknown mode(s) {bad}; choose from {', '.join(MODES)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device")
    if min(args.steps, args.batch, args.final_size, args.repeats) < 1 or args.warmup < 0:
        p.error("--steps, --batch, --final-size and --repeats must be >= 1, --warmup >= 0")
    return args


def stage_sizes(model: torch.nn.Module, curriculum: str, final_size: int) -> list[int]:
    """The distinct input sizes of ``curriculum``'s schedule for ``model`` (a 300-epoch run), ascending."""
    sched = curriculum_plan(curriculum, epochs=300, final_size=final_size, model=model)
    return sorted({st.size for st in sched.stages} | {final_size})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_model_mode(base: torch.nn.Module, sizes: list[int], mode: str, args, device: torch.device,
                     start: float) -> Iterator[dict]:
    """Rows of one model in one mode, one per size: the final size first (every ratio's reference), then ascending
    (so a budget cuts the middle sizes first); the model switches size in place like a run."""
    model = copy.deepcopy(base).to(device)
    channels_last = "channels_last" in mode
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-4, weight_decay=0.05,
                                    **optimizer_kernel_options("adamw", "auto", device))
    step_model = compile_module(model, args.compile_backend) if mode.startswith("compile") else model
    amp = (args.amp == "bf16") or (args.amp == "auto" and device.type == "cuda")
    gen = torch.Generator(device="cpu").manual_seed(0)

    def step(x, y):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(step_model(x), y, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        dispatch_clip_grad(model.parameters(), 5.0)
        optimizer.step()

    for size in [max(sizes)] + sorted(sizes)[:-1]:
        row = {"model": args.model_name, "mode": mode, "size": size, "batch": args.batch}
        # a cell is skipped when it would end after the budget, judged by the last cell of this mode (the first cell
        # of a mode always runs while time is left)
        cell_start = time.perf_counter()
        if args.budget_s is not None and cell_start - start + args.cell_seconds.get(mode, 0.0) > args.budget_s:
            yield {**row, "skipped": "budget"}
            continue
        switch_input_size(model, size, optimizer)  # ViT / Swin: new pos_embed / bias tables, optimizer re-pointed
        x = torch.randn(args.batch, 3, size, size, generator=gen).to(device)
        y = torch.randint(0, args.num_classes, (args.batch,), generator=gen).to(device)
        if channels_last:
            x = to_channels_last(x)
        t0 = time.perf_counter()
        step(x, y)
        _sync(device)
        first = time.perf_counter() - t0
        for _ in range(args.warmup):
            step(x, y)
        _sync(device)
        spent = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(x, y)
            _sync(device)
            spent.append(time.perf_counter() - t0)
        args.cell_seconds[mode] = time.perf_counter() - cell_start
        median = statistics.median(spent)
        yield {**row, "img_s": args.batch * args.steps / median, "ms_per_step": 1e3 * median / args.steps,
               "ms_min": 1e3 * min(spent) / args.steps, "repeats": args.repeats, "first_step_s": first}


def add_ratios(rows: list[dict], flops: dict[str, dict[int, float]], final_size: int) -> None:
    """time_ratio / flop_ratio / realised against the final size of the same model and mode."""
    ref = {(r["model"], r["mode"]): r for r in rows if r["size"] == final_size and "img_s" in r}
    for r in rows:
        f = flops[r["model"]]
        r["gflop_per_img"] = f[r["size"]] / 1e9
        r["flop_ratio"] = f[r["size"]] / f[final_size]
        base = ref.get((r["model"], r["mode"]))
        if "img_s" in r and base is not None:
            r["time_ratio"] = base["img_s"] / r["img_s"]
            r["realised"] = r["flop_ratio"] / r["time_ratio"]


COLUMNS = ["model", "mode", "size", "batch", "img_s", "ms_per_step", "ms_min", "repeats", "first_step_s", "gflop_per_img", "flop_ratio",
           "time_ratio", "realised", "skipped"]


def table(rows: list[dict]) -> str:
    def cell(v):
        if v is None:
            return ""
        return f"{v:.3g}" if isinstance(v, float) and abs(v) < 100 else (f"{v:.0f}" if isinstance(v, float) else str(v))

    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(cell(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(out)


def plot(rows: list[dict], path: str) -> bool:
    """img/s and realised/predicted speed-up per size, one line per model and mode (False: no matplotlib)."""
    try:
        import matplotlib  # optional: the table and CSV do not need it
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for key in dict.fromkeys((r["model"], r["mode"]) for r in rows):
        pts = sorted((r["size"], r) for r in rows if (r["model"], r["mode"]) == key and "img_s" in r)
        if not pts:
            continue
        a.plot([s for s, _ in pts], [r["img_s"] for _, r in pts], marker="o", label=f"{key[0]} {key[1]}")
        b.plot([s for s, _ in pts], [r.get("realised", float("nan")) for _, r in pts], marker="o")
    a.set(xlabel="input size B", ylabel="img/s (train step)", yscale="log")
    b.axhline(0.9, color="grey", ls="--", lw=1)
    b.set(xlabel="input size B", ylabel="measured / predicted speed-up vs final size")
    if a.lines:  # every cell skipped (budget): an empty plot, no legend
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_files(rows: list[dict], flops: dict, args) -> list[dict]:
    """OUT/bench_step.csv and .json of the rows so far, with their ratios; returns them sorted."""
    rows = sorted(rows, key=lambda r: (args.models.index(r["model"]), args.modes.index(r["mode"]), r["size"]))
    add_ratios(rows, flops, args.final_size)
    with open(os.path.join(args.out, "bench_step.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(args.out, "bench_step.json"), "w") as f:
        json.dump({"args": {k: v for k, v in vars(args).items() if k not in ("model_name", "cell_seconds")},
                   "rows": rows}, f, indent=1)
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # what a non-deterministic run sets (engine.acceleration)
    start = time.perf_counter()
    bases, sizes, flops = {}, {}, {}
    for name in args.models:
        torch.manual_seed(0)
        bases[name] = timm.create_model(name, num_classes=args.num_classes)
        sizes[name] = stage_sizes(bases[name], args.curriculum, args.final_size)
        flops[name] = flops_by_size(bases[name], sizes[name])
    rows: list[dict] = []
    os.makedirs(args.out, exist_ok=True)
    with recompile_room(max(len(s) for s in sizes.values())):
        for mode in args.modes:  # all models in the cheap modes first: a budget cuts the compile cells
            for name in args.models:
                args.model_name = name
                for row in bench_model_mode(bases[name], sizes[name], mode, args, device, start):
                    rows.append(row)
                    write_files(rows, flops, args)  # after every cell: a run stopped from outside keeps its rows
                    print(f"{time.perf_counter() - start:4.0f} s  {name} {mode} B={row['size']}: "
                          + (f"{row['img_s']:.0f} img/s, first step {row['first_step_s']:.1f} s" if "img_s" in row
                             else "skipped (budget)"), file=sys.stderr, flush=True)
    rows = write_files(rows, flops, args)
    print(f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, torch "
          f"{torch.__version__}, curriculum {args.curriculum}, batch {args.batch}, model step (no EMA, no batch path), "
          f"{args.repeats} x {args.steps} timed steps (ms_per_step: median, ms_min: fastest)")
    print(table(rows))
    drawn = plot(rows, os.path.join(args.out, "bench_step.png"))
    print(f"wrote {args.out}/bench_step.csv, .json" + (", .png" if drawn else " (no matplotlib: no plot)")
          + f" in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
