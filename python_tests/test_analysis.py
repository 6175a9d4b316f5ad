"""The Section 4 analysis tools: circular filters (vs a torch.fft reference with fftshift and an explicit distance
mask), filtered evaluation (vs an analytic case), linear CKA (vs the feature-space formula, and its invariances),
and `etrain analyze` end to end (vs the trainer's own evaluation, for an etrain checkpoint and a timm state dict)."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from torch import nn

from efficienttrain_ext import cli
from efficienttrain_ext.analysis import (cka_from_grams, centered_gram, cka_matrix, filter_specs, filtered_accuracy,
                                         layer_grams, linear_cka)
from efficienttrain_ext.analysis.runner import default_output
from efficienttrain_ext.config import load_config
from efficienttrain_ext.engine.pipeline import BatchPipeline
from efficienttrain_ext.errors import ConfigError
from efficienttrain_ext.ops.spectral import highpass_filter, lowpass_filter, parse_filter

from _etrain_helpers import metrics, tiny_args


def ref_filter(x: torch.Tensor, radius: float, low: bool) -> torch.Tensor:
    """From the definition: centred spectrum (fftshift), keep pixels at distance <= r from the centre (h//2, w//2)."""
    h, w = x.shape[-2:]
    spec = torch.fft.fftshift(torch.fft.fft2(x.double()), dim=(-2, -1))
    mask = torch.zeros(h, w, dtype=torch.bool)
    for i in range(h):
        for j in range(w):
            mask[i, j] = math.hypot(i - h // 2, j - w // 2) <= radius
    if not low:
        mask = ~mask
    return torch.fft.ifft2(torch.fft.ifftshift(spec * mask, dim=(-2, -1))).real


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (1, 2, 15, 20), (7, 9)])
@pytest.mark.parametrize("radius", [0, 1, 3.5, 6, 100])
def test_filters_match_the_fftshift_reference(shape, radius, gen):
    x = torch.rand(shape, generator=gen, dtype=torch.float64)
    lo, hi = lowpass_filter(x, radius), highpass_filter(x, radius)
    torch.testing.assert_close(lo, ref_filter(x, radius, True), atol=1e-12, rtol=0)
    torch.testing.assert_close(hi, ref_filter(x, radius, False), atol=1e-12, rtol=0)
    torch.testing.assert_close(lo + hi, x, atol=1e-12, rtol=0)  # complementary


def test_filter_limits_dtype_and_bad_input(gen):
    x = torch.rand(2, 3, 12, 12, generator=gen)
    torch.testing.assert_close(lowpass_filter(x, 0), x.mean(dim=(-2, -1), keepdim=True).expand_as(x), atol=1e-6,
                               rtol=0)  # radius 0 keeps only the mean
    torch.testing.assert_close(lowpass_filter(x, 12), x, atol=1e-6, rtol=0)  # radius past the corner keeps all
    assert lowpass_filter(x, 3).dtype == torch.float32
    torch.testing.assert_close(lowpass_filter(x, 3), ref_filter(x, 3, True).float(), atol=1e-5, rtol=0)
    for bad in (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(5), [[0.0]]):
        with pytest.raises(ValueError, match="floating tensor"):
            lowpass_filter(bad, 2)
    with pytest.raises(ValueError, match="radius"):
        highpass_filter(x, -1)
    for spec in ("lowpass", "band:3", "lowpass:x", "highpass:-2"):
        with pytest.raises(ValueError):
            parse_filter(spec)
        with pytest.raises(ConfigError, match="curriculum.filter"):
            load_config(None, [f"curriculum.filter={spec}"])
    with pytest.raises(ConfigError, match="curriculum.filter"):
        load_config(None, ["curriculum.filter=lowpass:0"])


def test_pipeline_filters_every_image_before_resizing(gen):
    x = torch.randint(0, 256, (3, 3, 16, 16), generator=gen, dtype=torch.uint8)
    y = torch.tensor([0, 1, 2])
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    pipe = BatchPipeline(mean, std, "cpu", image_filter=parse_filter("lowpass:3"), resize="area")
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    ref = ref_filter(x.double() / 255, 3, True).float()
    out, _ = pipe.eval(x, y)
    torch.testing.assert_close(out, (ref - m) / s, atol=1e-5, rtol=0)
    out8, _ = pipe.eval(x, y, 8)
    torch.testing.assert_close(out8, (torch.nn.functional.avg_pool2d(ref, 2) - m) / s, atol=1e-5, rtol=0)


class MeanSign(nn.Module):
    """Class 0 when the first channel's mean (normalised) is positive, else class 1."""

    def forward(self, x):
        v = x[:, 0].mean(dim=(-2, -1))
        return torch.stack([v, -v], dim=1)


def test_filtered_accuracy_on_an_analytic_model(gen):
    mean, std = (0.5,) * 3, (0.25,) * 3
    dark = torch.rand(40, generator=gen) < 0.3  # means near 0.3 or 0.7: far from the decision threshold 0.5
    x = (torch.randint(0, 150, (40, 3, 12, 12), generator=gen) + 105 * (~dark).view(-1, 1, 1, 1)).to(torch.uint8)
    y = dark.long()  # what the model says on the unfiltered images
    batches = [(x[i:i + 16], y[i:i + 16], []) for i in range(0, 40, 16)]
    specs = filter_specs(lowpass=[4, 1], highpass=[2])
    assert [s.name for s in specs] == ["none", "lowpass:1", "lowpass:4", "highpass:2"]
    (acc,) = filtered_accuracy([MeanSign()], batches, specs, mean, std, "cpu", progress=False)
    assert acc["none"] == acc["lowpass:1"] == acc["lowpass:4"] == 100.0  # a low-pass keeps the mean
    # a high-pass removes it: every normalised image has mean (0 - 0.5) / 0.25 < 0 -> class 1 everywhere
    assert acc["highpass:2"] == pytest.approx(100.0 * float((y == 1).float().mean()))
    with pytest.raises(ValueError, match="radii"):
        filter_specs(lowpass=[0])


def ref_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Kornblith et al. eq. (feature space): ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)."""
    x = x.reshape(x.shape[0], -1).double()
    y = y.reshape(y.shape[0], -1).double()
    x, y = x - x.mean(0), y - y.mean(0)
    return float(torch.linalg.norm(y.T @ x) ** 2 / (torch.linalg.norm(x.T @ x) * torch.linalg.norm(y.T @ y)))


def test_linear_cka_formula_and_invariances(gen):
    x = torch.randn(50, 30, generator=gen, dtype=torch.float64)
    y = x @ torch.randn(30, 20, generator=gen, dtype=torch.float64) + 0.5 * torch.randn(50, 20, generator=gen,
                                                                                          dtype=torch.float64)
    z = torch.randn(50, 4, 3, 3, generator=gen)  # any feature shape, float32
    for a, b in ((x, y), (x, z), (y, z)):
        assert linear_cka(a, b) == pytest.approx(ref_cka(a, b), abs=1e-10)
        assert linear_cka(a, b) == pytest.approx(linear_cka(b, a), abs=1e-12)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=gen, dtype=torch.float64))
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-12)  # orthogonal transform
    assert linear_cka(x, 7.0 * x + 3.0) == pytest.approx(1.0, abs=1e-12)  # isotropic scale, translation
    assert linear_cka(x @ q, 0.1 * y) == pytest.approx(linear_cka(x, y), abs=1e-12)
    assert 0.0 < linear_cka(x, y) < 1.0
    # not invariant to a non-isotropic scaling (what tells CKA from CCA)
    d = torch.diag(torch.linspace(0.1, 10.0, 30, dtype=torch.float64))
    assert abs(linear_cka(x, x @ d) - 1.0) > 1e-3
    torch.testing.assert_close(centered_gram(x).sum(0), torch.zeros(50, dtype=torch.float64), atol=1e-9, rtol=0)


def test_cka_bad_input(gen):
    x = torch.randn(10, 5, generator=gen)
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(x, x[:9])
    with pytest.raises(ValueError, match="at least 2"):
        linear_cka(x[:1], x[:1])
    with pytest.raises(ValueError, match="constant"):
        linear_cka(x, torch.ones(10, 3))
    with pytest.raises(ValueError, match="square"):
        cka_from_grams(torch.ones(3, 3), torch.ones(4, 4))


def test_layer_grams_and_cka_matrix(gen):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    xs = [torch.randn(6, 3, 8, 8, generator=gen) for _ in range(3)]
    grams = layer_grams(net, xs, ["0", "1", "output"])
    x = torch.cat(xs)
    with torch.no_grad():
        feats = {"0": net[0](x), "1": net[1](net[0](x)), "output": net(x)}
    for name, f in feats.items():
        torch.testing.assert_close(grams[name], centered_gram(f), atol=1e-5, rtol=1e-5)  # float32 conv by batch
    m = cka_matrix(grams, grams)
    assert len(m) == 3 and all(len(r) == 3 for r in m)
    for i in range(3):
        assert m[i][i] == pytest.approx(1.0, abs=1e-12)
        for j in range(3):
            assert m[i][j] == pytest.approx(m[j][i], abs=1e-12)
            assert m[i][j] == pytest.approx(ref_cka(list(feats.values())[i], list(feats.values())[j]), abs=1e-6)
    assert net.training  # the mode is restored
    with pytest.raises(ValueError, match="not modules"):
        layer_grams(net, xs, ["nope"])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("analyze")
    runs = []
    for name, curriculum in (("base", "none"), ("et", "efficienttrain")):
        assert cli.main(tiny_args(out, name, "--curriculum", curriculum, epochs=2, subset=48, val=40)) == 0
        runs.append(out / name)
    return out, runs


def test_etrain_analyze_end_to_end(two_runs, capsys):
    out, (base, et) = two_runs
    dest = out / "analysis"
    args = ["analyze", str(base), str(et / "last.pt"), "--lowpass", "4,8", "--highpass", "4", "--cka",
            "--cka-images", "24", "--output", str(dest), "--set", "train.progress=false"]
    assert cli.main(args) == 0
    res = json.loads((dest / "analyze.json").read_text())
    labels = [c["label"] for c in res["checkpoints"]]
    assert len(set(labels)) == 2
    for lab, run in zip(labels, (base, et)):  # the unfiltered accuracy is the trainer's own final evaluation
        assert res["spectral"][lab]["none"] == pytest.approx(metrics(run)[-1]["top1"], abs=1e-9)
        assert set(res["spectral"][lab]) == {"none", "lowpass:4", "lowpass:8", "highpass:4"}
    for f in ("spectral.csv", "spectral.md", "spectral.png", "cka.csv", "cka.png"):
        assert (dest / f).stat().st_size > 0
    cka = res["cka"]
    assert cka["images"] == 24 and cka["rows"] == ["act1", "layer1", "layer2", "layer3", "layer4", "output"]
    assert all(0.0 <= v <= 1.0 + 1e-9 for row in cka["matrix"] for v in row)
    # EMA weights differ from the trained ones
    assert cli.main([*args[:5], "--weights", "ema", "--output", str(out / "ema"), "--set", "train.progress=false"]) == 0
    ema = json.loads((out / "ema" / "analyze.json").read_text())
    assert ema["spectral"][labels[0]]["none"] == pytest.approx(metrics(base)[-1]["ema_top1"], abs=1e-9)


def test_etrain_analyze_timm_state_dict(two_runs, capsys):
    out, (base, _) = two_runs
    state = torch.load(base / "last.pt", weights_only=True)["model"]
    torch.save(state, out / "plain.pth")
    common = ["--lowpass", "4", "--set", "train.progress=false", "--set", "data.train_subset=48",
              "--set", "data.val_subset=40", "--set", "data.final_size=32", "--set", "data.workers=0"]
    assert cli.main(["analyze", str(out / "plain.pth"), "--output", str(out / "sd"), "--set",
                     "model.name=resnet10t", *common]) == 0
    res = json.loads((out / "sd" / "analyze.json").read_text())
    assert res["spectral"]["plain"]["none"] == pytest.approx(metrics(base)[-1]["top1"], abs=1e-9)
    # the wrong model for the weights, a missing file, CKA with one model, bad radii: clear errors, exit 2
    assert cli.main(["analyze", str(out / "plain.pth"), "--output", str(out / "x"), "--set", "model.name=resnet18",
                     *common]) == 2
    assert "does not load into resnet18" in capsys.readouterr().err
    assert cli.main(["analyze", str(out / "missing.pt"), "--output", str(out / "x")]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli.main(["analyze", str(base), "--cka", "--output", str(out / "x")]) == 2
    assert "two checkpoints" in capsys.readouterr().err
    assert cli.main(["analyze", str(base), "--lowpass", "0", "--output", str(out / "x")]) == 2
    assert "radii" in capsys.readouterr().err


def test_etrain_analyze_as_the_readme_writes_it(two_runs):
    """README.md: `etrain analyze CKPT [CKPT2] --lowpass 8,16 --highpass 8 --cka`, with no --output: the results go
    to analysis/ beside the first checkpoint (issue 20 item 10)."""
    out, (base, et) = two_runs
    assert cli.main(["analyze", str(base), str(et), "--lowpass", "8,16", "--highpass", "8", "--cka",
                     "--set", "train.progress=false"]) == 0
    res = json.loads((base / "analysis" / "analyze.json").read_text())
    assert set(res["spectral"][res["checkpoints"][0]["label"]]) == {"none", "lowpass:8", "lowpass:16", "highpass:8"}
    assert res["cka"]["images"] == 40  # --cka-images 512 capped at the 40 validation images
    assert default_output(str(et / "last.pt")) == str(et / "analysis")  # a checkpoint file: beside it
