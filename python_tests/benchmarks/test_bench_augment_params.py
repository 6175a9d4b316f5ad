"""CPU benchmark: RandAugment's parameter generation, the per-op / per-sample reference it replaced
(python_tests/_augment_policy_reference.py) vs the table-driven RandAugment.chain_args, at batch 256 (2 slots per
image: 512 op slots), on the same draws, single-threaded. The last test prints old / new time ratios from this run
(run with -s, or set ETRAIN_BENCH_AUGMENT_PARAMS_JSON=PATH to write them).

    pytest python_tests/benchmarks/test_bench_augment_params.py -s                      # ~15 s on 2 cores
    pytest python_tests/benchmarks/test_bench_augment_params.py --benchmark-disable     # smoke test

No speed is asserted (the machine is shared); each benchmark checks that both give the same bits.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

import _augment_policy_reference as ref
from efficienttrain_ext.augment import from_timm_string

BATCH, SIZE = 256, 224
POLICIES = ("rand-m9-mstd0.5", "rand-m9-mstd0.5-inc1", "rand-m9-mstd0.5-t3aw")
ROUNDS, ITERATIONS, WARMUP = 20, 10, 2
_RESULTS: dict[tuple[str, str], float] = {}


def _setup(policy):
    ra = from_timm_string(policy, SIZE)
    draws = ra.draw(BATCH, torch.Generator().manual_seed(0))
    new, old = ra.chain_args(draws, SIZE, SIZE), ref.chain_args(ra, draws, SIZE, SIZE)
    assert all(torch.equal(a.view(torch.int64) if a.is_floating_point() else a,
                           b.view(torch.int64) if b.is_floating_point() else b) for a, b in zip(new, old))
    return ra, draws


def _record(policy, which, benchmark):
    stats = getattr(benchmark, "stats", None)
    if stats is None or not stats:
        return
    _RESULTS[(policy, which)] = stats.stats.min
    benchmark.extra_info["us_per_batch"] = stats.stats.min * 1e6


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("which", ["reference", "tables"])
def test_bench_chain_args(benchmark, one_thread, policy, which):
    benchmark.group = f"randaugment-params-{policy}-b{BATCH}"
    ra, draws = _setup(policy)
    fn = ((lambda: ref.chain_args(ra, draws, SIZE, SIZE)) if which == "reference"
          else (lambda: ra.chain_args(draws, SIZE, SIZE)))
    out = benchmark.pedantic(fn, rounds=ROUNDS, iterations=ITERATIONS, warmup_rounds=WARMUP)
    assert out[1].shape == (BATCH, ra.num_layers, 6)
    _record(policy, which, benchmark)


def test_report_ratios():
    rows = [dict(policy=p, reference_us=_RESULTS[(p, "reference")] * 1e6, tables_us=_RESULTS[(p, "tables")] * 1e6,
                 speedup=_RESULTS[(p, "reference")] / _RESULTS[(p, "tables")])
            for p in POLICIES if (p, "reference") in _RESULTS and (p, "tables") in _RESULTS]
    if not rows:
        pytest.skip("benchmarks disabled or not run")
    print(f"\nRandAugment parameter generation, batch {BATCH}, 1 thread (min over rounds):")
    for r in rows:
        print(f"  {r['policy']}: reference {r['reference_us']:.0f} us, tables {r['tables_us']:.0f} us, "
              f"speedup {r['speedup']:.2f}x")
    path = os.environ.get("ETRAIN_BENCH_AUGMENT_PARAMS_JSON")
    if path:
        with open(path, "w") as f:
            json.dump(dict(batch=BATCH, size=SIZE, threads=1, rows=rows), f, indent=1)
