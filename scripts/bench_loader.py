"""Data-loader benchmark: img/s at the final size from a JPEG ImageFolder, against what a model consumes at each B.

Loaders (each reads, decodes, RandomResizedCrops to ``--size`` and flips, giving uint8 batches, exactly what
the trainer's ``data.loader`` gives): the torch DataLoader with each ``--workers`` count, DALI with the CPU
decoder and ``--workers`` threads, and DALI ``mixed`` (nvJPEG on the GPU; ``--devices cpu,mixed``). A loader's
img/s is its steady state: each epoch's first batch (worker start-up, pipeline build) is not timed. ``img per
CPU-s`` divides all images by all CPU time of the process and its workers, start-up included: on a shared
machine that is steadier than img/s.

Model: the trainer's step at each size B of ``--sizes`` on ``--model-device`` (the device-side path -- batched
RandAugment at m=9, the low-frequency crop from ``--size`` to B, erasing, Mixup/CutMix -- then forward, backward and
an SGD step; bf16 autocast and channels_last on CUDA), from uint8 batches of ``--model-batch`` already on the
device; img/s = batch / median step time. At each B the table marks the loaders slower than the model (the
bottleneck) and the replay factor r = ceil(model img/s / loader img/s) that would let the loader keep up
(EfficientTrain++'s replay buffer trains on each loaded batch r times).

``--e2e`` also runs ``etrain train`` itself for 2 epochs at each B of ``--e2e-sizes`` (one-stage schedules at B,
final size ``--size``) with each loader and reports the second epoch's training img/s.

Writes ``loaders.csv``, ``model.csv``, ``bottleneck.csv`` (and ``e2e.csv``), ``bench_loader.png`` and
``table.md`` under ``--out``.

On this project's CPU machine (docs/data.md has the table):
    python scripts/make_photo_folder.py /tmp/photos --per-class 200 --val-per-class 2
    python scripts/bench_loader.py --root /tmp/photos --workers 1,2 --model resnet50 --model-batch 16 \\
        --out outputs/bench_loader_cpu
On a GPU machine (prepared; the numbers go into docs/data.md):
    python scripts/make_photo_folder.py /tmp/photos --per-class 400 --val-per-class 10
    python scripts/bench_loader.py --root /tmp/photos --devices cpu,mixed --workers 1,2,4,8,16 --batch 160 \\
        --model resnet50 --model-device cuda --model-batch 160 --e2e --out outputs/bench_loader_gpu
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import resource
import statistics
import sys
import time

import torch
import yaml
from tqdm import tqdm

from efficienttrain_ext.config import load_config
from efficienttrain_ext.curriculum.switching import switch_input_size
from efficienttrain_ext.data import IMAGENET_MEAN, IMAGENET_STD, build_datasets
from efficienttrain_ext.data.dali_pipeline import DaliEpochLoader, dali_available
from efficienttrain_ext.engine.distributed import DistInfo
from efficienttrain_ext.engine.loaders import TorchEpochLoader
from efficienttrain_ext.engine.metrics import read_metrics
from efficienttrain_ext.engine.model_factory import create_model
from efficienttrain_ext.engine.pipeline import BatchPipeline
from efficienttrain_ext.engine.plots import new_figure
from efficienttrain_ext.engine.tasks import ClassificationTask
from efficienttrain_ext.engine.trainer import run as train_run


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def measure_loader(loader, images_wanted: int) -> dict[str, float]:
    """Steady-state img/s over epochs until ``images_wanted`` images were timed (each epoch's first batch is not)."""
    timed = total = 0
    busy = 0.0
    cpu0 = _cpu_seconds()
    epoch = 0
    while timed < images_wanted:
        loader.set_epoch(epoch)
        it = iter(loader)
        first = next(it, None)
        if first is None:
            raise SystemExit("the folder holds less than one batch: build a bigger one (make_photo_folder.py)")
        total += first[0].shape[0]
        _sync()
        t0 = time.perf_counter()
        for x, _, _ in it:
            timed += x.shape[0]
            if timed >= images_wanted:
                break
        _sync()
        busy += time.perf_counter() - t0
        del it  # ends the epoch's workers / pipeline (their CPU time is counted when they exit)
        epoch += 1
    total += timed
    return {"img_s": timed / busy, "img_per_cpu_s": total / max(_cpu_seconds() - cpu0, 1e-9), "epochs": epoch}


def loader_rows(args) -> list[dict]:
    train = build_datasets("imagefolder", args.root, args.size).train
    configs = [("torch", "cpu", w) for w in args.workers]
    if "cpu" in args.devices or "mixed" in args.devices:
        if not dali_available():
            print("DALI is not installed: its rows are skipped (pip install nvidia-dali-cuda130)", file=sys.stderr)
        else:
            configs += [("dali", d, w) for d in ("cpu", "mixed") if d in args.devices for w in args.workers]
    rows = []
    for kind, device, w in tqdm(configs, desc="loaders", file=sys.stderr):
        if kind == "torch":
            loader = TorchEpochLoader(train, args.batch, DistInfo(), workers=w, seed=0,
                                      pin_memory=device == "cuda")
        else:
            loader = DaliEpochLoader(train, args.batch, DistInfo(), workers=w, seed=0,
                                     pin_memory=device == "mixed", device=device)
        r = measure_loader(loader, args.images)
        rows.append({"loader": kind, "decode": device, "workers": w, "batch": args.batch, "size": args.size,
                     "img_s": round(r["img_s"], 1), "img_per_cpu_s": round(r["img_per_cpu_s"], 1),
                     "epochs": r["epochs"], "load_avg": round(os.getloadavg()[0], 2)})
        print(f"{kind:5s} {device:5s} workers/threads {w:2d}: {r['img_s']:7.1f} img/s, "
              f"{r['img_per_cpu_s']:6.1f} img per CPU-s", file=sys.stderr)
    return rows


def model_rows(args) -> list[dict]:
    device = torch.device(args.model_device)
    cfg = load_config(overrides=[f"model.name={args.model}", f"data.final_size={args.size}",
                                 f"train.device={args.model_device}"])
    model = create_model(cfg, 1000).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    pipeline = BatchPipeline.from_config(cfg, IMAGENET_MEAN, IMAGENET_STD, 1000, device)
    task = ClassificationTask(pipeline.soft_targets, cfg.aug.smoothing)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randint(0, 256, (args.model_batch, 3, args.size, args.size), dtype=torch.uint8, device=device)
    y = torch.randint(0, 1000, (args.model_batch,), device=device)
    model.train()
    rows = []
    for b in tqdm(args.sizes, desc=f"{args.model} steps", file=sys.stderr):
        switch_input_size(model, b, opt)
        times = []
        for i in range(args.warmup_steps + args.steps):
            _sync()
            t0 = time.perf_counter()
            xb, yb = pipeline.train(x, y, b, 9.0)
            if cuda:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = task.loss(model, xb, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _sync()
            if i >= args.warmup_steps:
                times.append(time.perf_counter() - t0)
        step = statistics.median(times)
        rows.append({"model": args.model, "device": str(device), "batch": args.model_batch, "B": b,
                     "step_s": round(step, 4), "img_s": round(xb.shape[0] / step, 1)})
        print(f"{args.model} B={b}: {step * 1e3:.1f} ms/step, {rows[-1]['img_s']:.1f} img/s", file=sys.stderr)
    return rows


def bottleneck_rows(loaders: list[dict], models: list[dict]) -> list[dict]:
    rows = []
    for m in models:
        for ld in loaders:
            replay = max(1, math.ceil(m["img_s"] / ld["img_s"]))
            rows.append({"B": m["B"], "model_img_s": m["img_s"], "loader": f"{ld['loader']}-{ld['decode']}",
                         "workers": ld["workers"], "loader_img_s": ld["img_s"],
                         "bottleneck": "loader" if ld["img_s"] < m["img_s"] else "model", "replay": replay})
    return rows


def e2e_rows(args) -> list[dict]:
    loaders = [("torch", "auto")] + [("dali", d) for d in args.devices if dali_available()]
    rows = []
    for b in args.e2e_sizes:
        sched = os.path.join(args.out, f"stage_{b}.yaml")
        with open(sched, "w") as f:
            yaml.safe_dump({"name": f"fixed{b}", "magnitude": "constant", "stages": [{"fraction": 1.0, "size": b}]}, f)
        for kind, dev in loaders:
            name = f"e2e-{kind}-{dev}-B{b}"
            sets = [f"model.name={args.model}", f"data.root={args.root}", "data.dataset=imagefolder",
                    f"data.final_size={args.size}", f"data.loader={kind}", f"data.workers={max(args.workers)}",
                    f"data.train_subset={args.e2e_images}", f"data.val_subset={args.model_batch}",
                    f"train.batch_size={args.model_batch}", "train.epochs=2", f"train.device={args.model_device}",
                    f"train.output={args.out}", f"train.name={name}", "train.progress=false", "train.ema=false",
                    "train.eval_at_stage_size=false", f"curriculum.name={sched}"]
            if kind == "dali":
                sets.append(f"data.dali_device={dev}")
            train_run(load_config(overrides=sets), overwrite=True)
            last = read_metrics(os.path.join(args.out, name))[-1]
            rows.append({"B": b, "loader": f"{kind}-{dev}", "model": args.model, "batch": args.model_batch,
                         "img_s": round(last["img_s"], 1), "loaded_images": last["loaded_images"]})
            print(f"e2e B={b} {kind}-{dev}: {last['img_s']:.1f} img/s", file=sys.stderr)
    return rows


def write_csv(path: str, rows: list[dict]) -> None:
    if rows:
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


def plot(path: str, loaders: list[dict], models: list[dict], title: str) -> None:
    fig, ax = new_figure((7.0, 4.6))
    if models:
        bs = [m["B"] for m in models]
        rates = [m["img_s"] for m in models]
        ax.plot(bs, rates, "k-o", lw=2, label=f"{models[0]['model']} consumes ({models[0]['device']}, "
                                              f"batch {models[0]['batch']})")
    for ld in loaders:
        label = f"{ld['loader']} {ld['decode']} x{ld['workers']}"
        ax.axhline(ld["img_s"], ls="--" if ld["loader"] == "torch" else "-", lw=1.2, label=label,
                   color=f"C{loaders.index(ld) % 10}")
    if models:
        best = max(ld["img_s"] for ld in loaders)
        ax.fill_between(bs, best, rates, where=[r > best for r in rates], color="red", alpha=0.12,
                        label="loading is the bottleneck (best loader)")
    ax.set_yscale("log")
    ax.set_xlabel("training input size B (loader output stays at the final size)")
    ax.set_ylabel("images / s")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)


def markdown(loaders: list[dict], models: list[dict], bottleneck: list[dict], e2e: list[dict]) -> str:
    lines = ["| loader | decode | workers/threads | img/s | img per CPU-s |", "|---|---|---|---|---|"]
    lines += [f"| {r['loader']} | {r['decode']} | {r['workers']} | {r['img_s']:.1f} | {r['img_per_cpu_s']:.1f} |"
              for r in loaders]
    if models:
        keys = list(dict.fromkeys(f"{r['loader']} x{r['workers']}" for r in bottleneck))
        lines += ["", "| B | model img/s | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
        for m in models:
            cells = [f"{'**loader** r=' + str(r['replay']) if r['bottleneck'] == 'loader' else 'model'}"
                     for r in bottleneck if r["B"] == m["B"]]
            lines.append(f"| {m['B']} | {m['img_s']:.1f} | " + " | ".join(cells) + " |")
    if e2e:
        lines += ["", "| B | loader | end-to-end img/s |", "|---|---|---|"]
        lines += [f"| {r['B']} | {r['loader']} | {r['img_s']:.1f} |" for r in e2e]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="JPEG ImageFolder (scripts/make_photo_folder.py builds one)")
    p.add_argument("--size", type=int, default=224, help="final size the loaders crop to (default 224)")
    p.add_argument("--batch", type=int, default=64, help="loader batch (default 64)")
    p.add_argument("--images", type=int, default=1536, help="images timed per loader (default 1536)")
    p.add_argument("--workers", type=_ints, default=[1, 2], help="torch workers / DALI threads, e.g. 1,2,4,8")
    p.add_argument("--devices", type=lambda s: [v for v in s.split(",") if v], default=["cpu"],
                   help="DALI decoders to run: cpu, mixed (nvJPEG, needs a GPU); empty: no DALI")
    p.add_argument("--model", default="resnet50", help="timm model whose step time sets the demand ('' = none)")
    p.add_argument("--model-device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model-batch", type=int, default=160)
    p.add_argument("--sizes", type=_ints, default=[96, 128, 160, 192, 224], help="B values of the model steps")
    p.add_argument("--steps", type=int, default=3, help="timed steps per B (median); default 3")
    p.add_argument("--warmup-steps", type=int, default=1)
    p.add_argument("--e2e", action="store_true", help="also train 2 epochs with etrain at each --e2e-sizes B")
    p.add_argument("--e2e-sizes", type=_ints, default=[160, 224])
    p.add_argument("--e2e-images", type=int, default=2048, help="training images per e2e epoch")
    p.add_argument("--out", default="outputs/bench_loader")
    args = p.parse_args()
    if "mixed" in args.devices and not torch.cuda.is_available():
        raise SystemExit("--devices mixed needs a CUDA GPU (nvJPEG); use --devices cpu here")
    os.makedirs(args.out, exist_ok=True)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"GPU: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}", file=sys.stderr)
    loaders = loader_rows(args)
    models = model_rows(args) if args.model else []
    bottleneck = bottleneck_rows(loaders, models)
    e2e = e2e_rows(args) if args.e2e else []
    for name, rows in (("loaders", loaders), ("model", models), ("bottleneck", bottleneck), ("e2e", e2e)):
        write_csv(os.path.join(args.out, f"{name}.csv"), rows)
    where = torch.cuda.get_device_name() if args.model_device.startswith("cuda") else f"{os.cpu_count()} CPU cores"
    plot(os.path.join(args.out, "bench_loader.png"), loaders, models,
         f"loaders at {args.size} px (batch {args.batch}) vs {args.model or 'no model'} on {where}")
    table = markdown(loaders, models, bottleneck, e2e)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    print(f"wrote {args.out}/{{loaders,model,bottleneck,e2e}}.csv, bench_loader.png, table.md")


if __name__ == "__main__":
    main()
