"""The paper's Table 13 ablations as options of any curriculum: the size / RandAugment ramps (13a), how B is reached
(13b: antialiased down-sampling vs the low-frequency crop, checked against PIL and average pooling), a fixed
low-pass filter on every training image (Fig. 3), each through `etrain train` too."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from efficienttrain_ext import cli
from efficienttrain_ext.config import load_config
from efficienttrain_ext.curriculum import build_schedule
from efficienttrain_ext.engine.pipeline import BatchPipeline, resize_to
from efficienttrain_ext.errors import ConfigError
from efficienttrain_ext.ops.lowfreq import lowfreq_crop

from _etrain_helpers import metrics, tiny_args


def pil_resize(x: torch.Tensor, size: int, method) -> torch.Tensor:
    """Pillow's (antialiased) resize of each float plane (mode F)."""
    out = torch.empty(*x.shape[:-2], size, size, dtype=torch.float32)
    flat, dst = x.reshape(-1, *x.shape[-2:]), out.view(-1, size, size)
    for i, plane in enumerate(flat):
        img = Image.fromarray(plane.numpy().astype(np.float32), mode="F").resize((size, size), method)
        dst[i] = torch.from_numpy(np.array(img))
    return out


@pytest.mark.parametrize("method, pil", [("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC)])
@pytest.mark.parametrize("size", [46, 32, 17])
def test_antialiased_resize_matches_pillow(method, pil, size, gen):
    x = torch.rand(2, 3, 64, 64, generator=gen)
    torch.testing.assert_close(resize_to(x, size, method), pil_resize(x, size, pil), atol=2e-5, rtol=0)


def test_area_lowfreq_and_bad_method(gen):
    x = torch.rand(2, 3, 64, 64, generator=gen)
    torch.testing.assert_close(resize_to(x, 32, "area"), torch.nn.functional.avg_pool2d(x, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(resize_to(x, 16, "area"), x.view(2, 3, 16, 4, 16, 4).mean(dim=(3, 5)), atol=1e-6,
                               rtol=0)
    assert torch.equal(resize_to(x, 46, "lowfreq"), lowfreq_crop(x, 46))
    assert resize_to(x, 64, "area") is x  # the final size is left alone
    with pytest.raises(ValueError, match="resize method"):
        resize_to(x, 32, "nearest")
    with pytest.raises(ConfigError, match="curriculum.resize"):
        load_config(None, ["curriculum.resize=nearest"])


@pytest.mark.parametrize("method", ["lowfreq", "bilinear", "area"])
def test_training_pipeline_reaches_b_with_the_configured_method(method, gen):
    cfg = load_config(None, [f"curriculum.resize={method}", "aug.randaugment=null", "aug.reprob=0", "aug.mixup=0",
                             "aug.cutmix=0", "data.final_size=32"])
    mean, std = (0.4,) * 3, (0.3,) * 3
    pipe = BatchPipeline.from_config(cfg, mean, std, 10, torch.device("cpu"))
    x = torch.randint(0, 256, (4, 3, 32, 32), generator=gen, dtype=torch.uint8)
    out, _ = pipe.train(x, torch.arange(4), 16, 9.0)
    ref = {"lowfreq": lambda f: lowfreq_crop(f, 16), "bilinear": lambda f: pil_resize(f, 16, Image.BILINEAR),
           "area": lambda f: torch.nn.functional.avg_pool2d(f, 2)}[method](x.float() / 255)
    torch.testing.assert_close(out, (ref - 0.4) / 0.3, atol=1e-4, rtol=0)


def _sizes_and_mags(s, steps=40):
    return [s.size_at(e) for e in range(s.epochs)], [s.magnitude_at(i / steps) for i in range(steps + 1)]


@pytest.mark.parametrize("name", ["efficienttrain", "progressive", "efficienttrain++"])
def test_table13a_ramps(name):
    full = build_schedule(name, 20, 64)
    sizes, mags = _sizes_and_mags(full)
    # RandAugment ramp only: every stage at the final size, same stage boundaries and magnitudes
    no_size = build_schedule(name, 20, 64, size_ramp=False)
    s2, m2 = _sizes_and_mags(no_size)
    assert s2 == [64] * full.epochs and m2 == mags
    assert [(st.start, st.end) for st in no_size.stages] == [(st.start, st.end) for st in full.stages]
    assert no_size.relative_pixels() == pytest.approx(full.epochs / full.baseline)
    # crop only: the sizes kept, m = m0 throughout
    no_mag = build_schedule(name, 20, 64, m0=7.0, magnitude_ramp=False)
    s3, m3 = _sizes_and_mags(no_mag)
    assert s3 == sizes and m3 == [7.0] * len(mags)
    assert no_mag.relative_pixels() == pytest.approx(full.relative_pixels())
    # both off: the baseline's trajectory (final size, m0) over the curriculum's epochs
    both = build_schedule(name, 20, 64, size_ramp=False, magnitude_ramp=False)
    assert _sizes_and_mags(both) == ([64] * full.epochs, [9.0] * len(mags))
    assert mags != [9.0] * len(mags) and sizes != [64] * full.epochs  # the ramps were there to remove


def test_ablations_through_etrain_train(tmp_path):
    common = dict(epochs=4, subset=32, val=32, size=32)
    runs = {
        "crop-only": ["--set", "curriculum.magnitude_ramp=false"],
        "ra-only": ["--set", "curriculum.size_ramp=false"],
        "bilinear": ["--set", "curriculum.resize=bilinear"],
        "lowpass": ["--curriculum", "none", "--set", "curriculum.filter=lowpass:6"],
    }
    for name, extra in runs.items():
        args = tiny_args(tmp_path, name, "--curriculum", "efficienttrain", *extra, **common)
        assert cli.main(args) == 0
    m = {name: metrics(tmp_path / name) for name in runs}
    # efficienttrain at 4 epochs and 32 px: B = 22 for epochs 1-2, 28 for 3, 32 for 4
    assert [r["size"] for r in m["crop-only"]] == [22, 22, 28, 32] == [r["size"] for r in m["bilinear"]]
    assert [r["size"] for r in m["ra-only"]] == [32] * 4
    assert {r["magnitude"] for r in m["crop-only"]} == {9.0}  # the magnitude each epoch ended at
    # the ramp kept: m = 9 t/T at each step's start; the logged value is the last of 2 steps per epoch
    assert [r["magnitude"] for r in m["ra-only"]] == pytest.approx([9 * (e + 0.5) / 4 for e in range(4)])
    sched = json.loads((tmp_path / "ra-only" / "schedule.json").read_text())
    assert sched["predicted_cost"] == pytest.approx(1.0)
    for name in ("crop-only", "bilinear"):
        assert "top1_at_B" in m[name][0]
    # the filtered run evaluates on filtered images: `etrain analyze` of its checkpoint with the same low-pass
    # gives its final accuracy
    out = tmp_path / "an"
    assert cli.main(["analyze", str(tmp_path / "lowpass"), "--lowpass", "6", "--output", str(out),
                     "--set", "train.progress=false"]) == 0
    res = json.loads((out / "analyze.json").read_text())
    (acc,) = res["spectral"].values()
    assert acc["lowpass:6"] == pytest.approx(m["lowpass"][-1]["top1"], abs=1e-9)
