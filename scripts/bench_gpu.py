"""GPU benchmark of lowfreq_crop (forward and backward) vs the torch.fft path and antialiased bilinear.

Reports time per call (median of CUDA-event timings), the op's memory traffic (input read once + output written
once) as GB/s, and that as a fraction of the device's copy bandwidth measured in the same run.
Usage: python scripts/bench_gpu.py [--batch 256] [--size 224] [--target 160] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
import torch.nn.functional as F

import efficienttrain_ext as et


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--target", type=int, default=160)
    ap.add_argument("--json", default=None)
    ap.add_argument("--profile", action="store_true", help="print the CUDA kernels of one lowfreq_crop call per dtype")
    args = ap.parse_args()
    torch.manual_seed(0)
    bw_copy = copy_bandwidth_gbs()
    rows = []
    n, b = args.size, args.target
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(args.batch, 3, n, n, device="cuda", dtype=dtype)
        g = torch.randn(args.batch, 3, b, b, device="cuda", dtype=dtype)
        nbytes = (x.numel() + g.numel()) * x.element_size()
        cases = {
            "lowfreq_crop fwd": lambda: et.lowfreq_crop(x, b),
            "lowfreq_crop bwd (lowfreq_pad)": lambda: et.lowfreq_pad(g, n),
            "torch.fft path fwd": lambda: fft_path(x, b),
            "bilinear antialias fwd": lambda: F.interpolate(x, size=(b, b), mode="bilinear", antialias=True),
        }
        for name, fn in cases.items():
            for tf32 in ((False, True) if dtype == torch.float32 and name.startswith("lowfreq") else (False,)):
                torch.backends.cuda.matmul.allow_tf32 = tf32
                ms = cuda_time_ms(fn)
                gbs = nbytes / (ms * 1e-3) / 1e9
                rows.append(
                    dict(dtype=str(dtype).removeprefix("torch."), case=name + (" [tf32]" if tf32 else ""), ms=ms,
                         gbs=gbs, frac_of_copy_bw=gbs / bw_copy)
                )
        torch.backends.cuda.matmul.allow_tf32 = False
    fft = {r["dtype"]: r["ms"] for r in rows if r["case"] == "torch.fft path fwd"}
    for r in rows:
        r["speedup_vs_fft"] = fft[r["dtype"]] / r["ms"]
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  copy bandwidth {bw_copy:.0f} GB/s")
    print(f"batch {args.batch}x3x{n}x{n} -> {b}")
    print(f"| dtype | case | ms | GB/s | of copy BW | vs torch.fft |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dtype']} | {r['case']} | {r['ms']:.3f} | {r['gbs']:.0f} | {r['frac_of_copy_bw']:.0%} | "
              f"{r['speedup_vs_fft']:.2f}x |")
    if args.profile:
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(args.batch, 3, n, n, device="cuda", dtype=dtype)
            et.lowfreq_crop(x, b)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                et.lowfreq_crop(x, b)
                torch.cuda.synchronize()
            print(f"kernels of lowfreq_crop, {dtype}:")
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=10, max_name_column_width=70))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), copy_gbs=bw_copy, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
