"""The fused Triton crop/pad (efficienttrain_ext/ops/lowfreq_triton.py).

Without a GPU, conftest.py sets TRITON_INTERPRET=1 before triton is imported, so the same kernel source runs on CPU
tensors in triton's interpreter and is checked against the CPU op (itself checked against torch.fft in
test_lowfreq_ops.py) and float64. On a GPU the same tests run the compiled kernel on CUDA tensors. Sizes stay small:
the interpreter runs every program in Python.
"""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import efficienttrain_ext as et
from efficienttrain_ext.ops import lowfreq as lowfreq_mod
from efficienttrain_ext.ops import lowfreq_triton as lt

pytestmark = pytest.mark.skipif(not lt.available(), reason="triton is not installed")

GPU = torch.cuda.is_available() and et.built_with_cuda()
# The device the kernel runs on here: CUDA on a GPU machine, else the CPU through the interpreter.
KDEV = "cuda" if GPU else "cpu"
runs_kernel = pytest.mark.skipif(not (GPU or lt.interpreted()),
                                 reason="needs a CUDA GPU or TRITON_INTERPRET=1 (set by conftest.py without a GPU)")

# (H, W, bh, bw): odd, even, non-square, full size, 1 x 1, mixed parity (no Nyquist term), several tiles
SHAPES = [(8, 8, 4, 4), (7, 9, 4, 5), (9, 7, 3, 6), (16, 12, 6, 12), (33, 20, 16, 10), (5, 5, 5, 5), (12, 10, 1, 1),
          (40, 36, 18, 20)]


@pytest.fixture(autouse=True)
def _exact_fp32():
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(old)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double().cpu() - b.double().cpu()).abs().max() / b.double().abs().max().clamp_min(1e-30))


def crop_t(x, size):
    return torch.ops.etrain.lowfreq_crop_triton(x, list(size))


def pad_t(y, size):
    return torch.ops.etrain.lowfreq_pad_triton(y, list(size))


@runs_kernel
@pytest.mark.parametrize("H,W,bh,bw", SHAPES)
def test_fp32_ieee_matches_cpu_op(H, W, bh, bw):
    g = torch.Generator().manual_seed(H * 100 + W)
    x = torch.randn(2, 3, H, W, generator=g)
    y = torch.randn(2, 3, bh, bw, generator=g)
    # the CPU op in float64 is the reference (test_lowfreq_ops.py checks it against torch.fft)
    assert _rel(crop_t(x.to(KDEV), (bh, bw)), et.lowfreq_crop(x.double(), (bh, bw))) < 1e-5
    assert _rel(pad_t(y.to(KDEV), (H, W)), et.lowfreq_pad(y.double(), (H, W))) < 1e-5


@runs_kernel
def test_breaking_the_nyquist_term_is_caught():
    # The even-size rank-one term is what the correction adds; without it the result is measurably off.
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    bands = lt.BandCache()
    good = lt.crop(x.to(KDEV), (4, 4), bands)
    b = bands.get(x.to(KDEV), 8, 8, 4, 4)
    without = lt._launch(x.to(KDEV), (4, 4), b.R_h, b.R_w, b.v_h, b.v_w, b.a_h, b.a_w, False, None, lt._direct)
    ref = et.lowfreq_crop(x.double(), 4)
    assert _rel(good, ref) < 1e-5 and _rel(without, ref) > 1e-3


@runs_kernel
def test_strided_offset_and_uncollapsible_inputs():
    g = torch.Generator().manual_seed(3)
    base = torch.randn(3, 4, 22, 26, generator=g).to(KDEV)
    views = {
        "transposed planes": base.transpose(-1, -2),
        "step slices with an offset": base[1:, :, 2::2, 1::2],
        "channels_last": base.contiguous(memory_format=torch.channels_last),
        "permuted batch dims (no single plane stride)": base.permute(1, 0, 2, 3),
        "2-D": base[0, 0],
    }
    for name, v in views.items():
        size = (v.shape[-2] // 2 + 1, v.shape[-1] // 2)
        out = crop_t(v, size)
        assert out.is_contiguous(), name
        assert _rel(out, et.lowfreq_crop(v.cpu().double(), size)) < 1e-5, name
        back = pad_t(out, v.shape[-2:])
        assert _rel(back, et.lowfreq_pad(out.cpu().double(), v.shape[-2:])) < 1e-5, name


@runs_kernel
@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 2**-8), (torch.float16, 2**-10)])
def test_half_precision_in_fp32_out_in_dtype(dtype, tol):
    # computed in fp32 and rounded once: within half an ulp of the output dtype (relative to the largest value) on
    # the GPU, which rounds to nearest even; triton's interpreter truncates 16-bit conversions: one ulp there
    tol = tol * 2 if lt.interpreted() else tol
    x = torch.randn(2, 3, 20, 18, generator=torch.Generator().manual_seed(5)).to(dtype)
    out = crop_t(x.to(KDEV), (10, 8))
    assert out.dtype == dtype
    assert _rel(out, et.lowfreq_crop(x.double(), (10, 8))) <= tol
    y = torch.randn(2, 3, 10, 8, generator=torch.Generator().manual_seed(6)).to(dtype)
    back = pad_t(y.to(KDEV), (20, 18))
    assert back.dtype == dtype and _rel(back, et.lowfreq_pad(y.double(), (20, 18))) <= tol


@runs_kernel
@pytest.mark.parametrize("H,W,bh,bw", [(8, 8, 4, 4), (9, 14, 5, 6), (16, 16, 16, 6)])
def test_adjoint_identity(H, W, bh, bw):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, H, W, generator=g, dtype=torch.float64)
    y = torch.randn(3, bh, bw, generator=g, dtype=torch.float64)
    lhs = (crop_t(x.float().to(KDEV), (bh, bw)).double().cpu() * y).sum()
    rhs = (x * pad_t(y.float().to(KDEV), (H, W)).double().cpu()).sum()
    assert abs(float(lhs - rhs)) <= 1e-5 * float(x.abs().sum() * y.abs().max())


@runs_kernel
def test_gradcheck_through_the_registered_op():
    # fp32 (tl.dot has no fp64): finite differences of a linear op are exact up to fp32 rounding, hence the tolerances
    x = torch.randn(1, 2, 8, 6, generator=torch.Generator().manual_seed(8)).to(KDEV).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: crop_t(t, (4, 4)), (x,), eps=1e-2, atol=1e-3, rtol=1e-3,
                                    fast_mode=True)
    y = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(9)).to(KDEV).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: pad_t(t, (8, 6)), (y,), eps=1e-2, atol=1e-3, rtol=1e-3,
                                    fast_mode=True)
    # backward of crop is pad (the adjoint), computed by the triton path too
    g = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(10)).to(KDEV)
    (grad,) = torch.autograd.grad(crop_t(x, (4, 4)), x, g)
    assert _rel(grad, et.lowfreq_pad(g.cpu().double(), (8, 6))) < 1e-5


@runs_kernel
def test_empty_batches_and_bad_input():
    assert crop_t(torch.empty(0, 3, 8, 8, device=KDEV), (4, 4)).shape == (0, 3, 4, 4)
    assert pad_t(torch.empty(2, 0, 4, 4, device=KDEV), (8, 8)).shape == (2, 0, 8, 8)
    with pytest.raises(ValueError, match="must not exceed"):
        crop_t(torch.zeros(1, 4, 4, device=KDEV), (5, 4))
    with pytest.raises(ValueError, match="at least the input"):
        pad_t(torch.zeros(1, 4, 4, device=KDEV), (3, 4))


def test_precision_follows_torch_float32_matmul_precision():
    for torch_prec, tl_prec in (("highest", "ieee"), ("high", "tf32x3"), ("medium", "tf32")):
        torch.set_float32_matmul_precision(torch_prec)
        assert lt.precision() == tl_prec


def test_band_vectors_match_the_dft_sum():
    # R[r, p] = (1/n) Re sum over the kept frequencies of exp(2 pi i f (r/b - p/n)); v = sin(pi b p / n) / n
    for n, b in ((8, 4), (9, 5), (224, 160), (7, 7), (10, 1)):
        R, v = lt.band_vectors(n, b, torch.device("cpu"))
        f = torch.arange(-(b // 2), (b + 1) // 2, dtype=torch.float64)
        r = torch.arange(b, dtype=torch.float64)[:, None, None]
        p = torch.arange(n, dtype=torch.float64)[None, :, None]
        ref = torch.cos(2 * math.pi * f * (r / b - p / n)).sum(-1) / n
        assert torch.allclose(R, ref, atol=1e-12)
        q = torch.arange(n, dtype=torch.float64)
        assert torch.allclose(v, torch.sin(math.pi * b * q / n) / n, atol=1e-12)


def test_band_cache_is_bounded_and_skips_fake_tensors():
    cache = lt.BandCache(capacity=2)
    x = torch.zeros(1, 8, 8)
    first = cache.get(x, 8, 8, 4, 4)
    assert cache.get(x, 8, 8, 4, 4) is first and len(cache) == 1
    cache.get(x, 8, 8, 2, 2)
    cache.get(x, 8, 8, 6, 6)
    assert len(cache) == 2 and cache.get(x, 8, 8, 4, 4) is not first  # the oldest was dropped
    with FakeTensorMode() as mode:
        before = len(cache)
        cache.get(mode.from_tensor(x), 8, 8, 3, 3)
        assert len(cache) == before  # traced or fake: built, not cached


def test_backend_choice_and_errors(monkeypatch):
    monkeypatch.delenv("ETRAIN_LOWFREQ_BACKEND", raising=False)
    assert et.lowfreq_backend() == "cublas"  # measured faster on an H200 (docs/performance.md)
    monkeypatch.setenv("ETRAIN_LOWFREQ_BACKEND", "triton")
    assert et.lowfreq_backend() == "triton" and et.info()["lowfreq_backend"] == "triton"
    monkeypatch.setenv("ETRAIN_LOWFREQ_BACKEND", "fft")
    with pytest.raises(ValueError, match="ETRAIN_LOWFREQ_BACKEND must be one of cublas, triton"):
        et.lowfreq_backend()


# Traced in a child process without TRITON_INTERPRET: the interpreter's kernels launch eagerly and cannot be traced.
# torch.compile(fullgraph=True) runs on fake CUDA tensors (no GPU needed) with an AOT-autograd backend that records
# the forward graph, which is what inductor would receive. (Triton's mutation analysis needs a GPU driver; without
# one torch warns and assumes every kernel argument is written, which changes nothing checked here.)
_TRACE = r"""
import json, torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd
from torch._subclasses.fake_tensor import FakeTensorMode
import efficienttrain_ext as et

graphs = []

def record(gm, inputs):
    graphs.append(gm.code)
    return make_boxed_func(gm.forward)

def f(t):
    return et.lowfreq_pad(et.lowfreq_crop(t, 8), 16)

with FakeTensorMode(allow_non_fake_inputs=True):
    x = torch.empty(2, 3, 16, 16, device="cuda")
    out = torch.compile(f, backend=aot_autograd(fw_compiler=record), fullgraph=True)(x)
print(json.dumps(dict(shape=list(out.shape), device=out.device.type, graphs=graphs)))
"""


@pytest.mark.parametrize("backend", ["triton", "cublas"])
def test_cuda_calls_trace_into_the_triton_kernel(backend):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["ETRAIN_LOWFREQ_BACKEND"] = backend
    proc = subprocess.run([sys.executable, "-c", _TRACE], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["shape"] == [2, 3, 16, 16] and res["device"] == "cuda"
    assert len(res["graphs"]) == 1  # fullgraph: one graph, no break
    graph = res["graphs"][0]
    if backend == "triton":
        # the user-defined kernel itself is in the graph (crop and pad), with the band matrices built before it
        assert graph.count("triton_kernel_wrapper_functional(") == 2, graph
        assert "etrain.lowfreq_crop" not in graph and "etrain.lowfreq_pad" not in graph
    else:
        assert "triton_kernel_wrapper" not in graph
        assert "etrain.lowfreq_crop.default" in graph and "etrain.lowfreq_pad.default" in graph


@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (the interpreter's kernels cannot be traced)")
def test_opcheck_triton_ops():
    x = torch.randn(2, 6, 5, generator=torch.Generator().manual_seed(11)).to(KDEV)
    torch.library.opcheck(torch.ops.etrain.lowfreq_crop_triton.default, (x, [4, 2]))
    torch.library.opcheck(torch.ops.etrain.lowfreq_pad_triton.default, (x, [7, 9]))


@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (the interpreter's kernels cannot be traced)")
def test_torch_compile_fullgraph_traces_the_triton_op(monkeypatch):
    monkeypatch.setenv("ETRAIN_LOWFREQ_BACKEND", "triton")
    x = torch.randn(2, 3, 40, 36, generator=torch.Generator().manual_seed(12)).cuda()

    def f(t):
        return et.lowfreq_pad(et.lowfreq_crop(t, (20, 18)) * 2, (40, 36))

    compiled = torch.compile(f, fullgraph=True)
    ref = et.lowfreq_pad(et.lowfreq_crop(x.cpu().double(), (20, 18)) * 2, (40, 36))
    assert _rel(compiled(x), ref) < 1e-5


@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["triton", "cublas"])
def test_cuda_backends_agree_with_cpu(backend, monkeypatch):
    monkeypatch.setenv("ETRAIN_LOWFREQ_BACKEND", backend)
    x = torch.randn(4, 3, 64, 48, generator=torch.Generator().manual_seed(13))
    for size in ((32, 24), (31, 17), (64, 48), (1, 1)):
        assert _rel(et.lowfreq_crop(x.cuda(), size), et.lowfreq_crop(x.double(), size)) < 1e-5
        y = et.lowfreq_crop(x, size)
        assert _rel(et.lowfreq_pad(y.cuda(), (64, 48)), et.lowfreq_pad(y.double(), (64, 48))) < 1e-5


@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["triton", "cublas"])
def test_cuda_graph_capture_on_a_never_used_size(backend, monkeypatch):
    # A size first seen inside capture: the band matrices are built in the graph (no host copy or sync) and not
    # cached; replays stay right after other allocations reuse memory, and eager calls afterwards too.
    monkeypatch.setenv("ETRAIN_LOWFREQ_BACKEND", backend)
    size = (37, 29) if backend == "triton" else (39, 27)
    x = torch.randn(2, 3, 70, 58, device="cuda")
    ref = et.lowfreq_crop(x.cpu().double(), size)
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        with torch.cuda.graph(g):
            out = et.lowfreq_crop(x, size)
    torch.cuda.current_stream().wait_stream(s)
    for _ in range(3):
        junk = [torch.full((1 << 20,), 7.0, device="cuda") for _ in range(8)]  # churn the allocator
        g.replay()
        torch.cuda.synchronize()
        assert _rel(out, ref) < 1e-5
        del junk
    assert _rel(et.lowfreq_crop(x, size), ref) < 1e-5


@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")
def test_side_stream_use_survives_cache_eviction(monkeypatch):
    monkeypatch.setenv("ETRAIN_LOWFREQ_BACKEND", "cublas")
    x = torch.randn(64, 3, 96, 96, device="cuda")
    ref = et.lowfreq_crop(x.cpu().double(), 48)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        outs = [et.lowfreq_crop(x, 48) for _ in range(4)]
        for n in (95, 94, 93):  # > 256 new entries: the first size's matrices are evicted meanwhile
            for b in range(1, n):
                et.lowfreq_crop(x[:1, :1, :n, :n], b)
    torch.cuda.synchronize()
    for o in outs:
        assert _rel(o, ref) < 1e-5
