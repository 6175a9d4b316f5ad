"""GPU benchmark of lowfreq_crop (forward and backward) per CUDA backend (triton, cublas) and fp32 matmul precision,
vs the torch.fft path and antialiased bilinear (--sweep also times triton tile configurations).

Reports time per call (median of CUDA-event timings), the op's memory traffic (input read once + output written
once) as GB/s, and that as a fraction of the device's copy bandwidth measured in the same run.
Usage: python scripts/bench_gpu.py [--batch 256] [--size 224] [--target 160] [--json out.json]

With --augment it benchmarks the batched RandAugment instead (bench_augment): img/s of
efficienttrain_ext.augment.RandAugment ('rand-m9-mstd0.5', '-inc1', and the t3aw set with GaussianBlur) on a uint8
batch (per-sample ops; on the GPU checked bit-exact against the CPU kernels first), timed by CUDA events over
back-to-back calls, with each policy's host cost per batch on its own line; vs torchvision.transforms.v2.RandAugment
(one op for the whole batch), kornia's RandAugment and timm's per-image PIL RandAugment on one CPU core, each when
importable (otherwise skipped with a message; --no-compare skips them).
Usage: python scripts/bench_gpu.py --augment [--batch 256] [--size 224] [--iters 20] [--device cuda|cpu]
       [--no-compare] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

import efficienttrain_ext as et
from efficienttrain_ext.ops import augment as ops_augment
from efficienttrain_ext.ops import lowfreq_triton
from efficienttrain_ext.ops.lowfreq import _TRITON_BANDS


def cuda_time_ms(fn, warmup: int = 5, iters: int = 30) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def fft_path(x: torch.Tensor, b: int) -> torch.Tensor:
    """EfficientTrain's reference freq_crop: full fft2, four corners, ifft2, real part, (B/N)^2."""
    n = x.shape[-1]
    h = b // 2
    spec = torch.fft.fft2(x.float())
    top = torch.cat([spec[..., :h, :h], spec[..., :h, n - h :]], dim=-1)
    bottom = torch.cat([spec[..., n - h :, :h], spec[..., n - h :, n - h :]], dim=-1)
    return (torch.fft.ifft2(torch.cat([top, bottom], dim=-2)).real * (b / n) ** 2).to(x.dtype)


def copy_bandwidth_gbs() -> float:
    a = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")  # 1 GiB
    ms = cuda_time_ms(lambda: a.clone(), warmup=3, iters=10)
    return 2 * a.numel() / (ms * 1e-3) / 1e9


def _augment_photos(n: int, size: int) -> torch.Tensor:
    """n real photos (scikit-image's samples, resized) as uint8 [n, 3, size, size]; random images without it."""
    try:
        import numpy as np
        import skimage.data as sd
        from PIL import Image

        imgs = [np.asarray(Image.fromarray(f()).resize((size, size))) for f in (sd.astronaut, sd.chelsea, sd.coffee)]
        return torch.from_numpy(np.stack([imgs[i % 3] for i in range(n)])).permute(0, 3, 1, 2).contiguous()
    except Exception as e:  # noqa: BLE001 (ImportError, or a broken install)
        print(f"note: scikit-image/Pillow photos unavailable ({type(e).__name__}: {e}); using random images")
        return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _skipped(what: str, e: BaseException) -> None:
    print(f"skipped: {what} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")


def _host_ms(ra, x: torch.Tensor, gen: torch.Generator, iters: int) -> float:
    """Median host cost of one RandAugment batch: the draws, the parameter tables, the packing, the one upload and
    the launches, i.e. the time the calling thread spends in ra(x). On CUDA the device queue is drained first, so
    the call returns once everything is enqueued; on the CPU the op itself runs in the call, so only the host
    arguments (ra.chain_inputs, plus the staging, a no-op there) are timed."""
    n, c, h, w = x.shape
    times = []
    ra(x, generator=gen)  # warm-up: first-call costs (allocator, pinned pool, caches) are not per batch
    for _ in range(iters):
        if x.is_cuda:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            ra(x, generator=gen)
        else:
            t0 = time.perf_counter()
            ops_augment.stage_args(x, *ra.chain_inputs(n, c, h, w, gen))
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _throughput_ms(fn, device: torch.device, iters: int, warmup: int = 3) -> float:
    """ms per call of back-to-back calls: CUDA events around the whole run, one sync at the end (a sync per call
    would hide the host cost inside the device time, or add it to it); on the CPU the wall time."""
    for _ in range(warmup):
        fn()
    if device.type != "cuda":
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t0) * 1e3 / iters
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / iters


def bench_augment(batch: int = 256, size: int = 224, json_path: str | None = None, device: str = "cuda",
                  compare: bool = True, iters: int = 20) -> list[dict]:
    """img/s of the batched RandAugment on ``device`` (rand-m9-mstd0.5: the issue's goal; -inc1; and the t3aw set
    with GaussianBlur), each with its host cost per batch on its own line; on CUDA first checked bit-exact against
    the CPU kernels. With ``compare``: torchvision v2 / kornia RandAugment on the same device and timm's per-image
    PIL RandAugment on one CPU core, each when importable (a missing or broken package skips its row)."""
    from efficienttrain_ext.augment import from_timm_string

    dev = torch.device(device)
    x_cpu = _augment_photos(batch, size)
    x = x_cpu.to(dev)
    rows = []
    same_all = True
    for policy, note in (("rand-m9-mstd0.5", "per-sample ops"), ("rand-m9-mstd0.5-inc1", "per-sample ops"),
                         ("rand-m9-mstd0.5-t3aw", "per-sample ops incl. GaussianBlur")):
        ra = from_timm_string(policy, size)
        same = None
        if dev.type == "cuda":  # the GPU result must equal the CPU kernels' (same draws, same seed), bit for bit
            same = torch.equal(ra(x, generator=torch.Generator().manual_seed(1)).cpu(),
                               ra(x_cpu, generator=torch.Generator().manual_seed(1)))
            print(f"etrain RandAugment {policy}: GPU output {'==' if same else '!='} CPU output (bit-exact check)")
            same_all &= same
        gen = torch.Generator().manual_seed(0)
        host = _host_ms(ra, x, gen, iters)
        ms = _throughput_ms(lambda: ra(x, generator=gen), dev, iters)
        print(f"host cost per batch, etrain RandAugment {policy}: {host:.3f} ms ({batch / (host * 1e-3):.0f} img/s "
              f"if the host were the limit)")
        rows.append(dict(case=f"etrain RandAugment {policy} ({note}, {dev.type})", ms=ms, img_s=batch / (ms * 1e-3),
                         host_ms=host, gpu_equals_cpu=same))
    if compare:
        rows += _augment_baselines(x, x_cpu, batch, dev, iters)
    base = rows[-1]["img_s"] if rows[-1]["case"].startswith("timm") else None
    name = torch.cuda.get_device_name() if dev.type == "cuda" else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    print(f"device: {name}  torch {torch.__version__}")
    print(f"RandAugment, batch {batch}x3x{size}x{size} uint8, {iters} back-to-back calls per row")
    print("| case | ms / batch | img/s | host ms / batch | vs timm 1 core |")
    print("|---|---|---|---|---|")
    for r in rows:
        r["vs_timm_core"] = r["img_s"] / base if base else None
        vs = f"{r['vs_timm_core']:.1f}x" if base else "-"
        host = f"{r['host_ms']:.3f}" if r.get("host_ms") is not None else "-"
        print(f"| {r['case']} | {r['ms']:.3f} | {r['img_s']:.0f} | {host} | {vs} |")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(dict(device=name, batch=batch, size=size, iters=iters, rows=rows), f, indent=1)
    if not same_all:
        raise SystemExit("the GPU RandAugment output differs from the CPU kernels' (see above)")
    return rows


def _augment_baselines(x: torch.Tensor, x_cpu: torch.Tensor, batch: int, dev: torch.device, iters: int) -> list[dict]:
    """torchvision v2 and kornia RandAugment on x's device, timm's per-image PIL RandAugment on one CPU core."""
    rows = []
    try:
        from torchvision.transforms import v2

        tv = v2.RandAugment(num_ops=2, magnitude=9)
        ms = _throughput_ms(lambda: tv(x), dev, iters)
        rows.append(dict(case=f"torchvision v2 RandAugment n=2 m=9 (one op per batch, {dev.type})", ms=ms,
                         img_s=batch / (ms * 1e-3)))
    except Exception as e:  # noqa: BLE001 (not installed, or built for another torch)
        _skipped("torchvision v2 RandAugment", e)
    try:
        import kornia.augmentation as K

        kra = K.auto.RandAugment(n=2, m=9)

        def kornia_ra():  # kornia works on float images in [0, 1]: the conversions are part of the cost
            return (kra(x.float().div_(255)) * 255).round_().clamp_(0, 255).to(torch.uint8)

        ms = _throughput_ms(kornia_ra, dev, iters)
        rows.append(dict(case=f"kornia RandAugment n=2 m=9 (uint8 -> float -> uint8, {dev.type})", ms=ms,
                         img_s=batch / (ms * 1e-3)))
    except Exception as e:  # noqa: BLE001
        _skipped("kornia RandAugment", e)
    try:
        import random

        from PIL import Image
        from timm.data.auto_augment import rand_augment_transform

        from efficienttrain_ext.augment import from_timm_string

        policy = "rand-m9-mstd0.5-inc1"
        tf = rand_augment_transform(policy, dict(from_timm_string(policy, x.shape[-1]).hparams))
        for op in tf.ops:  # PosterizeIncreasing's 0 bits crash Pillow >= 10
            if "Posterize" in op.name:
                op.aug_fn = (lambda f: lambda img, b, **kw: f(img, max(1, b), **kw))(op.aug_fn)
        pil = [Image.fromarray(img.permute(1, 2, 0).contiguous().numpy()) for img in x_cpu[:64]]
        random.seed(0)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for im in pil:
                tf(im)
            best = min(best, time.perf_counter() - t0)
        rows.append(dict(case=f"timm RandAugment {policy} per image (PIL, 1 CPU core)",
                         ms=best * 1e3 * batch / len(pil), img_s=len(pil) / best))
    except Exception as e:  # noqa: BLE001
        _skipped("timm RandAugment (PIL)", e)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--target", type=int, default=160)
    ap.add_argument("--json", default=None)
    ap.add_argument("--profile", action="store_true", help="print the CUDA kernels of one lowfreq_crop call per dtype")
    ap.add_argument("--sweep", action="store_true", help="also time triton tile configurations")
    ap.add_argument("--augment", action="store_true",
                    help="benchmark the batched RandAugment (bench_augment) instead of lowfreq_crop")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="--augment: where the op runs (cpu: a smoke run of the benchmark itself, e.g. in CI)")
    ap.add_argument("--no-compare", dest="compare", action="store_false",
                    help="--augment: skip the torchvision / kornia / timm rows")
    ap.add_argument("--iters", type=int, default=20, help="--augment: back-to-back calls per row (>= 1)")
    args = ap.parse_args()
    if args.augment:
        if args.iters < 1 or args.batch < 1 or args.size < 1:
            ap.error("--iters, --batch and --size must be >= 1")
        if args.device == "cuda" and not torch.cuda.is_available():
            ap.error("--device cuda: no CUDA GPU is visible (use --device cpu for a CPU run)")
        bench_augment(args.batch, args.size, args.json, args.device, args.compare, args.iters)
        return
    bench_lowfreq(args.batch, args.size, args.target, args.json, args.profile, args.sweep)


def _backend(name: str):
    os.environ["ETRAIN_LOWFREQ_BACKEND"] = name


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref).abs().max() / ref.abs().max())


def bench_lowfreq(batch: int, n: int, b: int, json_path: str | None, profile: bool, sweep: bool) -> list[dict]:
    """lowfreq_crop / lowfreq_pad per backend (triton, cublas) and fp32 matmul precision (highest = exact fp32,
    high, medium) vs the torch.fft path and antialiased bilinear; each lowfreq row also gives its max error relative
    to the float64 result on the first 8 planes."""
    torch.manual_seed(0)
    bw_copy = copy_bandwidth_gbs()
    rows = []
    backends = ["triton", "cublas"] if lowfreq_triton.available() else ["cublas"]
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(batch, 3, n, n, device="cuda", dtype=dtype)
        g = torch.randn(batch, 3, b, b, device="cuda", dtype=dtype)
        ref_crop = et.lowfreq_crop(x[:8].double().cpu(), b)
        ref_pad = et.lowfreq_pad(g[:8].double().cpu(), n)
        nbytes = (x.numel() + g.numel()) * x.element_size()
        cases = []
        precisions = ("highest", "high", "medium") if dtype == torch.float32 else ("highest",)
        for backend in backends:
            for prec in precisions:
                cases.append((f"lowfreq_crop fwd [{backend}, {prec}]", backend, prec,
                              lambda: et.lowfreq_crop(x, b), lambda out: _rel_err(out[:8].cpu(), ref_crop)))
                cases.append((f"lowfreq_pad = crop bwd [{backend}, {prec}]", backend, prec,
                              lambda: et.lowfreq_pad(g, n), lambda out: _rel_err(out[:8].cpu(), ref_pad)))
        cases.append(("torch.fft path fwd", None, "highest", lambda: fft_path(x, b), None))
        cases.append(("bilinear antialias fwd", None, "highest",
                      lambda: F.interpolate(x, size=(b, b), mode="bilinear", antialias=True), None))
        for name, backend, prec, fn, err in cases:
            if backend:
                _backend(backend)
            torch.set_float32_matmul_precision(prec)
            try:
                ms = cuda_time_ms(fn)
                e = err(fn()) if err else None
            except Exception as ex:  # noqa: BLE001 (one failing backend must not hide the others' numbers)
                _skipped(name, ex)
                continue
            gbs = nbytes / (ms * 1e-3) / 1e9
            rows.append(dict(dtype=str(dtype).removeprefix("torch."), case=name, ms=ms, gbs=gbs,
                             frac_of_copy_bw=gbs / bw_copy, max_rel_err=e))
        torch.set_float32_matmul_precision("highest")
    os.environ.pop("ETRAIN_LOWFREQ_BACKEND", None)
    fft = {r["dtype"]: r["ms"] for r in rows if r["case"] == "torch.fft path fwd"}
    for r in rows:
        r["speedup_vs_fft"] = fft[r["dtype"]] / r["ms"] if r["dtype"] in fft else None
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  copy bandwidth {bw_copy:.0f} GB/s")
    print(f"batch {batch}x3x{n}x{n} -> {b}; GB/s counts the crop's input read once and output written once")
    print("| dtype | case | ms | GB/s | of copy BW | vs torch.fft | max rel err vs fp64 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        err = f"{r['max_rel_err']:.1e}" if r["max_rel_err"] is not None else "-"
        vs = f"{r['speedup_vs_fft']:.2f}x" if r["speedup_vs_fft"] else "-"
        print(f"| {r['dtype']} | {r['case']} | {r['ms']:.3f} | {r['gbs']:.0f} | {r['frac_of_copy_bw']:.0%} | {vs} | "
              f"{err} |")
    sweep_rows = _sweep_tiles(batch, n, b) if sweep and lowfreq_triton.available() else []
    if profile:
        for backend in backends:
            _backend(backend)
            x = torch.randn(batch, 3, n, n, device="cuda")
            et.lowfreq_crop(x, b)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                et.lowfreq_crop(x, b)
                torch.cuda.synchronize()
            print(f"kernels of lowfreq_crop, float32, {backend}:")
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=8, max_name_column_width=70))
        os.environ.pop("ETRAIN_LOWFREQ_BACKEND", None)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), copy_gbs=bw_copy, rows=rows, sweep=sweep_rows), f,
                      indent=1)
    return rows


# Largest error of a swept configuration, relative to the largest value of the cuBLAS result at "highest" precision,
# that still counts as right: a tiling bug is off by O(1); TF32 (10-bit mantissa) stays near 1e-3 over 224 terms.
SWEEP_TOL = {"highest": 1e-4, "high": 1e-4, "medium": 1e-2}


def sweep_one(op: str, prec: str, config, fn, ref: torch.Tensor, timer=None) -> dict:
    """One tile configuration: run it once, check its result against ``ref`` (the cuBLAS path) and time it only when
    it is right. A wrong configuration (beyond SWEEP_TOL[prec]) is flagged, ``ms`` None, and never timed; one that
    fails to run (out of shared memory or registers) gets ``failed``."""
    row = dict(op=op, precision=prec, **dataclasses.asdict(config), ms=None, max_rel_err=None, wrong=False,
               failed=None)
    try:
        out = fn(config)
    except Exception as ex:  # noqa: BLE001 (out of shared memory / registers for this tile)
        row["failed"] = type(ex).__name__
        return row
    err = float((out.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-30))
    row["max_rel_err"] = err
    if not err <= SWEEP_TOL[prec]:  # NaN counts as wrong
        row["wrong"] = True
        return row
    row["ms"] = (timer or (lambda f: cuda_time_ms(f, warmup=2, iters=10)))(lambda: fn(config))
    return row


def _sweep_tiles(batch: int, n: int, b: int) -> list[dict]:
    """Triton tile configurations for the crop (fp32, each precision) and the pad (tf32x3): ms per call, each
    configuration checked against the cuBLAS path first (sweep_one); wrong ones are flagged, not timed."""
    x = torch.randn(batch, 3, n, n, device="cuda")
    g = torch.randn(batch, 3, b, b, device="cuda")
    torch.set_float32_matmul_precision("highest")
    _backend("cublas")
    refs = {"crop": et.lowfreq_crop(x, b), "pad": et.lowfreq_pad(g, n)}
    os.environ.pop("ETRAIN_LOWFREQ_BACKEND", None)
    # (BM, BM2, BN, BK, BQ, warps, stages): all 160 output rows in one program (128 + 32) with several column and
    # input tiles; the row-tiled shapes of the previous kernel for comparison (BM2 = 0, two row groups at 160)
    configs = [lowfreq_triton.TileConfig(BM=bm, BN=bn, BK=bk, BQ=bq, num_warps=w, num_stages=st, BM2=bm2)
               for bm, bm2, bn, bk, bq, w, st in [
                   (128, 32, 64, 64, 32, 8, 3), (128, 32, 32, 64, 32, 8, 3), (128, 32, 64, 32, 32, 8, 3),
                   (128, 32, 64, 32, 64, 8, 3), (128, 32, 128, 32, 32, 8, 2), (128, 32, 32, 32, 32, 4, 3),
                   (128, 32, 16, 64, 64, 4, 3), (128, 0, 64, 64, 32, 8, 3), (64, 64, 64, 32, 32, 4, 2),
                   (128, 128, 64, 32, 32, 8, 2)]]
    out = []
    print("| op | precision | BM | BN | BK | BQ | warps | stages | ms | max rel err vs cuBLAS |  (BM as BM+BM2)")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for prec in ("highest", "high", "medium"):
        torch.set_float32_matmul_precision(prec)
        for op, fn in (("crop", lambda c: lowfreq_triton.crop(x, (b, b), _TRITON_BANDS, c)),
                       ("pad", lambda c: lowfreq_triton.pad(g, (n, n), _TRITON_BANDS, c))):
            if op == "pad" and prec != "high":
                continue
            for c in configs:
                r = sweep_one(op, prec, c, fn, refs[op])
                out.append(r)
                head = (f"| {op} | {prec} | {c.BM}+{c.BM2} | {c.BN} | {c.BK} | {c.BQ} | {c.num_warps} | "
                        f"{c.num_stages} |")
                if r["failed"]:
                    print(f"{head} failed: {r['failed']} | - |")
                elif r["wrong"]:
                    print(f"{head} WRONG, not timed | {r['max_rel_err']:.1e} |")
                else:
                    print(f"{head} {r['ms']:.3f} | {r['max_rel_err']:.1e} |")
    torch.set_float32_matmul_precision("highest")
    wrong = [r for r in out if r["wrong"]]
    if wrong:
        print(f"WARNING: {len(wrong)} tile configuration(s) gave wrong results (flagged above, not timed)")
    return out


if __name__ == "__main__":
    main()
