"""Session summary of the lowfreq benchmarks: speed ratios of lowfreq_crop vs the torch.fft path and vs
antialiased bilinear, per size and direction, from this run's pytest-benchmark results.

    --etrain-bench-json PATH   also write the ratios to PATH (or set ETRAIN_BENCH_JSON=PATH). The option is
                               known when pytest is pointed at this folder or a file in it; ETRAIN_BENCH_JSON works
                               for any invocation (e.g. ``pytest python_tests``).

Ratios are other_time / lowfreq_time, so > 1 means lowfreq_crop is faster. Times are the minimum over the
rounds (the least disturbed by other load on a shared machine); medians are in the JSON as well.
"""

from __future__ import annotations

import json
import os
import platform

import pytest
import torch

_RESULTS = pytest.StashKey[dict]()
BASE = "lowfreq_crop"
OTHERS = ("torch_fft", "bilinear_aa")
BF16 = "lowfreq_crop_bf16"  # lowfreq_crop with bf16 GEMMs (matmul precision "medium"), forward only


def pytest_addoption(parser):
    parser.addoption(
        "--etrain-bench-json",
        metavar="PATH",
        default=None,
        help="write lowfreq_crop's speed ratios (vs torch.fft and antialiased bilinear) to this JSON file",
    )


def pytest_configure(config):
    config.stash[_RESULTS] = {}


@pytest.fixture
def one_thread():
    """torch on one thread for the test (per-core numbers on a shared machine), restored afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def etrain_bench_record(request):
    """record(size, direction, method, benchmark): keep this benchmark's timings for the session summary."""
    store = request.config.stash[_RESULTS]

    def record(size: int, direction: str, method: str, benchmark) -> None:
        meta = getattr(benchmark, "stats", None)  # None when benchmarks are disabled
        if meta is None or not meta:
            return
        s = meta.stats
        store[(size, direction, method)] = {"min": s.min, "median": s.median, "mean": s.mean, "rounds": s.rounds}

    return record


def _summary(store: dict) -> list[dict]:
    rows = []
    for size, direction in sorted({(k[0], k[1]) for k in store}, key=lambda k: (k[1] != "forward", k[0])):
        t = {m: store.get((size, direction, m)) for m in (BASE, *OTHERS, BF16)}
        row = {
            "size": size,
            "direction": direction,
            "seconds_min": {m: v["min"] for m, v in t.items() if v},
            "seconds_median": {m: v["median"] for m, v in t.items() if v},
            "rounds": {m: v["rounds"] for m, v in t.items() if v},
        }
        for other in OTHERS:
            if t[BASE] and t[other]:
                row[f"speedup_vs_{other}"] = t[other]["min"] / t[BASE]["min"]
                row[f"speedup_vs_{other}_median"] = t[other]["median"] / t[BASE]["median"]
        if t[BF16] and t["bilinear_aa"]:
            row["bf16_speedup_vs_bilinear_aa"] = t["bilinear_aa"]["min"] / t[BF16]["min"]
        rows.append(row)
    return rows


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own tables
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    store = config.stash.get(_RESULTS, None)
    if store is None:
        return
    path = config.getoption("--etrain-bench-json", default=None) or os.environ.get("ETRAIN_BENCH_JSON")
    if not store:
        if path:
            terminalreporter.write_line(f"etrain bench: no timings recorded (benchmarks disabled?); {path} not written")
        return
    rows = _summary(store)
    tr = terminalreporter
    tr.write_sep("-", "lowfreq_crop speed ratios (other time / lowfreq_crop time, min over rounds; >1 = lowfreq faster)")
    tr.write_line(
        f"{'size':>5} {'direction':<9} {'lowfreq ms':>11} {'torch.fft ms':>13} {'bilinear ms':>12} "
        f"{'vs torch.fft':>13} {'vs bilinear_aa':>15} {'bf16 ms':>8} {'bf16 vs bilinear':>17}"
    )

    def ms(row, m):
        v = row["seconds_min"].get(m)
        return f"{v * 1e3:.1f}" if v is not None else "-"

    def ratio(row, other):
        v = row.get(f"speedup_vs_{other}")
        return f"{v:.2f}x" if v is not None else "-"

    for r in rows:
        tr.write_line(
            f"{r['size']:>5} {r['direction']:<9} {ms(r, BASE):>11} {ms(r, 'torch_fft'):>13} {ms(r, 'bilinear_aa'):>12} "
            f"{ratio(r, 'torch_fft'):>13} {ratio(r, 'bilinear_aa'):>15} {ms(r, BF16):>8} "
            f"{(format(r['bf16_speedup_vs_bilinear_aa'], '.2f') + 'x') if 'bf16_speedup_vs_bilinear_aa' in r else '-':>17}"
        )
    if path:
        doc = {
            "what": "lowfreq_crop speed ratios: other method's time / lowfreq_crop's time (>1 = lowfreq_crop faster)",
            "input": "randn(64, 3, 224, 224) float32, CPU",
            "backward": "time of the backward pass of sum(output * g) alone; the forward is outside the timing",
            "statistic": "min over rounds (speedup_*_median: from medians)",
            "machine": {
                "torch": torch.__version__,
                "torch_threads": torch.get_num_threads(),
                "cpu_count": os.cpu_count(),
                "processor": platform.processor() or platform.machine(),
            },
            "results": rows,
        }
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(doc, f, indent=2)
        tr.write_line(f"etrain bench: wrote {path}")
