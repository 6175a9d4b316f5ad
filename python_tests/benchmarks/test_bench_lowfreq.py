"""CPU benchmarks: efficienttrain_ext.lowfreq_crop vs the torch.fft path vs antialiased bilinear resizing.

Input: x = randn(64, 3, 224, 224) float32, output sizes 96, 128, 160, 192. For each (size, direction) the three
methods share one pytest-benchmark group, so its table compares them; conftest.py prints the speed ratios at
the end of the session (and writes them to JSON with ``--etrain-bench-json PATH`` or ``ETRAIN_BENCH_JSON``).

  forward:  time of method(x, size); also lowfreq_crop_bf16 = lowfreq_crop under
            torch.set_float32_matmul_precision("medium") (bf16 GEMMs, opt-in precision)
  backward: time of ``(method(x, size) * g).sum().backward()``'s backward pass alone (the forward runs in the
            untimed setup of each round), x with requires_grad

    pytest python_tests/benchmarks                          # ~1 min on 2 cores
    pytest python_tests/benchmarks --benchmark-disable       # smoke test: every method runs once, shapes checked

No speed is asserted (the machine is shared); the outputs' and gradients' shapes are, and the torch.fft path is
checked against lowfreq_crop (they are the same operator for even sizes).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

import efficienttrain_ext as et

BATCH, CHANNELS, SIZE = 64, 3, 224
SIZES = (96, 128, 160, 192)
ROUNDS, WARMUP = 5, 1


def fft_crop(x: torch.Tensor, b: int) -> torch.Tensor:
    """EfficientTrain's reference freq_crop in the input's precision: fft2, four corners, ifft2, real, (b/n)^2."""
    n = x.shape[-1]
    spec = torch.fft.fft2(x)
    h = b // 2
    top = torch.cat([spec[..., :h, :h], spec[..., :h, n - h :]], dim=-1)
    bottom = torch.cat([spec[..., n - h :, :h], spec[..., n - h :, n - h :]], dim=-1)
    return torch.fft.ifft2(torch.cat([top, bottom], dim=-2)).real * (b / n) ** 2


def bilinear_aa(x: torch.Tensor, b: int) -> torch.Tensor:
    return F.interpolate(x, size=(b, b), mode="bilinear", antialias=True, align_corners=False)


@contextlib.contextmanager
def matmul_precision(precision: str):
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


def lowfreq_crop_bf16(x: torch.Tensor, b: int) -> torch.Tensor:
    """lowfreq_crop with torch's fp32 matmul precision at "medium": oneDNN runs the GEMMs in bf16 (AMX where the
    CPU has it) with fp32 accumulation, as it does for torch.matmul; opt-in, ~1e-2 absolute error on randn."""
    with matmul_precision("medium"):
        return et.lowfreq_crop(x, b)


METHODS = {
    "lowfreq_crop": lambda x, b: et.lowfreq_crop(x, b),
    "torch_fft": fft_crop,
    "bilinear_aa": bilinear_aa,
    "lowfreq_crop_bf16": lowfreq_crop_bf16,
}
FORWARD_ONLY = {"lowfreq_crop_bf16"}  # the backward pass runs outside the precision context


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(BATCH, CHANNELS, SIZE, SIZE, generator=g)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("size", SIZES)
def test_forward(benchmark, etrain_bench_record, x, size, method):
    fn = METHODS[method]
    benchmark.group = f"lowfreq {size}x{size} forward"
    benchmark.extra_info.update(size=size, direction="forward", method=method)
    with torch.no_grad():
        out = benchmark.pedantic(fn, args=(x, size), rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    assert out.shape == (BATCH, CHANNELS, size, size)
    assert out.dtype == torch.float32
    etrain_bench_record(size, "forward", method, benchmark)


@pytest.mark.parametrize("method", [m for m in METHODS if m not in FORWARD_ONLY])
@pytest.mark.parametrize("size", SIZES)
def test_backward(benchmark, etrain_bench_record, x, size, method):
    fn = METHODS[method]
    g = torch.randn(BATCH, CHANNELS, size, size, generator=torch.Generator().manual_seed(1))
    leaf = {}

    def setup():
        xi = x.detach().requires_grad_(True)
        leaf["x"] = xi
        loss = (fn(xi, size) * g).sum()
        return (loss,), {}

    benchmark.group = f"lowfreq {size}x{size} backward"
    benchmark.extra_info.update(size=size, direction="backward", method=method)
    benchmark.pedantic(torch.Tensor.backward, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    grad = leaf["x"].grad
    assert grad is not None and grad.shape == (BATCH, CHANNELS, SIZE, SIZE)
    assert torch.isfinite(grad).all()
    etrain_bench_record(size, "backward", method, benchmark)


def test_fft_path_is_the_same_operator(x):
    """The torch.fft path benchmarked above computes what lowfreq_crop does (even sizes): a fair comparison."""
    xs = x[:2]
    for size in SIZES:
        a, b = et.lowfreq_crop(xs, size), fft_crop(xs, size)
        assert a.shape == b.shape == (2, CHANNELS, size, size)
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
