"""CPU benchmark: batched RandAugment (efficienttrain_ext.augment) vs timm's per-image PIL RandAugment.

Input: a batch of 64 real photos at 224x224 uint8 (scikit-image's astronaut/chelsea/coffee, resized), policy
'rand-m9-mstd0.5-inc1' (timm's default hparams for 224 px: translate_const 100, fill = ImageNet mean). Both run
single-threaded (torch.set_num_threads(1)), so the numbers are images/s per core; timm gets PIL images (the
PIL conversion is not timed), ours the uint8 tensor batch. One pytest-benchmark group; ``extra_info`` holds
images/s, and the last test prints the speed ratio (run with -s to see it, or set ETRAIN_BENCH_AUGMENT_JSON=PATH).

    pytest python_tests/benchmarks/test_bench_augment.py -s           # ~10 s on 2 cores
    pytest python_tests/benchmarks/test_bench_augment.py --benchmark-disable   # smoke test

No speed is asserted (the machine is shared).
"""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data.auto_augment import rand_augment_transform

from efficienttrain_ext.augment import from_timm_string

skdata = pytest.importorskip("skimage.data")

BATCH, SIZE, POLICY = 64, 224, "rand-m9-mstd0.5-inc1"
ROUNDS, WARMUP = 10, 2
MEAN = (0.485, 0.456, 0.406)
_RESULTS: dict[str, float] = {}


@pytest.fixture(scope="module")
def photos():
    imgs = [np.asarray(Image.fromarray(f()).resize((SIZE, SIZE), Image.Resampling.BILINEAR))
            for f in (skdata.astronaut, skdata.chelsea, skdata.coffee)]
    return [imgs[i % 3] for i in range(BATCH)]


def _record(name, benchmark):
    stats = getattr(benchmark, "stats", None)
    if stats is None or not stats:
        return
    ips = BATCH / stats.stats.min
    benchmark.extra_info["images_per_s"] = ips
    _RESULTS[name] = ips


@pytest.mark.benchmark(group="randaugment-cpu-64x224")
def test_bench_etrain_randaugment(benchmark, photos, one_thread):
    x = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).contiguous()
    ra = from_timm_string(POLICY, SIZE, MEAN)
    g = torch.Generator().manual_seed(0)
    out = benchmark.pedantic(lambda: ra(x, generator=g), rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    assert out.shape == x.shape and out.dtype == torch.uint8
    _record("etrain", benchmark)


@pytest.mark.benchmark(group="randaugment-cpu-64x224")
def test_bench_timm_randaugment(benchmark, photos):
    hp = dict(translate_const=int(SIZE * 0.45), img_mean=tuple(min(255, round(255 * x)) for x in MEAN))
    tf = rand_augment_transform(POLICY, hp)
    pil = [Image.fromarray(p) for p in photos]
    for op in tf.ops:  # timm's PosterizeIncreasing crashes at 0 bits on Pillow >= 10 (magnitude 10)
        if "Posterize" in op.name:
            fn = op.aug_fn
            op.aug_fn = lambda img, bits, _fn=fn, **kw: _fn(img, max(1, bits), **kw)
    random.seed(0)
    np.random.seed(0)
    out = benchmark.pedantic(lambda: [tf(im) for im in pil], rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    assert len(out) == BATCH
    _record("timm", benchmark)


def test_report_speedup():
    if set(_RESULTS) != {"etrain", "timm"}:
        pytest.skip("benchmarks disabled or not run")
    report = dict(_RESULTS, speedup=_RESULTS["etrain"] / _RESULTS["timm"], batch=BATCH, size=SIZE, policy=POLICY,
                  threads=1)
    print(f"\nRandAugment CPU, 1 thread, {BATCH}x{SIZE}^2: etrain {report['etrain']:.0f} img/s, timm (PIL) "
          f"{report['timm']:.0f} img/s, speedup {report['speedup']:.2f}x")
    path = os.environ.get("ETRAIN_BENCH_AUGMENT_JSON")
    if path:
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
