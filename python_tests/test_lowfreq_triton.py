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
from lowfreq_reference import ref_crop

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
        # 16-bit inputs: TF32 for bf16 (exact inputs, tolerance 2^-8), tf32x3 for fp16 (11-bit mantissa)
        assert (lt.precision(torch.bfloat16), lt.precision(torch.float16)) == ("tf32", "tf32x3")


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


# ------------------------------------------------------------------------------------------------------------ tiling
# With config_for's tiles every shape above is one output tile and one K tile, so a kernel that drops a tile offset
# or mixes up its K loop still passes them. 16 x 16 x 16 x 16 tiles make every loop of the kernel run several times:
# the output-row and output-column tiles (grid axes 1 and 2), the K loop over input rows, the Q loop over input
# columns, and the planes (grid axis 0, several planes with different data). Crop and pad are checked against the
# torch.fft reference (lowfreq_reference.py), on odd, even, mixed and non-square sizes; the pad at the same sizes
# runs its own (transposed) tile counts.
SMALL_TILES = lt.TileConfig(BM=16, BN=16, BK=16, BQ=16, num_warps=4, num_stages=1)
# the same with a second row accumulator per program (BM + BM2 = 32 rows): both row blocks and several row groups
SPLIT_TILES = lt.TileConfig(BM=16, BN=16, BK=16, BQ=16, num_warps=4, num_stages=1, BM2=16)
# (H, W, bh, bw): even band on even sizes (Nyquist term, 3 K and 3 Q tiles, 2 x 2 output tiles); odd everything;
# even band on odd sizes (Nyquist term with ragged last tiles); odd-by-even; an output of exactly two tiles per axis
TILING_SHAPES = [(40, 36, 18, 20), (37, 41, 19, 17), (37, 41, 18, 20), (35, 48, 21, 32), (48, 33, 32, 17)]


def _fft_pad(y: torch.Tensor, size) -> torch.Tensor:
    # the adjoint of the reference crop, by autograd through torch.fft (independent of the band matrices)
    H, W = size
    x = torch.zeros(*y.shape[:-2], H, W, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(ref_crop(x, tuple(y.shape[-2:])), x, y.double())
    return g


@runs_kernel
@pytest.mark.parametrize("tiles", [SMALL_TILES, SPLIT_TILES], ids=["16", "16+16"])
@pytest.mark.parametrize("H,W,bh,bw", TILING_SHAPES)
def test_small_tiles_crop_and_pad_match_torch_fft(H, W, bh, bw, tiles):
    g = torch.Generator().manual_seed(H * 1000 + W * 10 + bh)
    x = torch.randn(1, 3, H, W, generator=g)
    y = torch.randn(1, 3, bh, bw, generator=g)
    bands = lt.BandCache()
    assert _rel(lt.crop(x.to(KDEV), (bh, bw), bands, tiles), ref_crop(x, (bh, bw))) < 1e-5
    assert _rel(lt.pad(y.to(KDEV), (H, W), bands, tiles), _fft_pad(y, (H, W))) < 1e-5


@runs_kernel
def test_tiles_forced_by_environment_reach_the_registered_op(monkeypatch):
    monkeypatch.setenv(lt.TILES_ENV, "16,16,16,16")
    assert lt.config_for(160, 160, 224, 224) == lt.TileConfig(BM=16, BN=16, BK=16, BQ=16, num_warps=4, num_stages=3)
    monkeypatch.setenv(lt.TILES_ENV, "16+16,16,16,16")  # two row accumulators per program, two row groups at 40
    x = torch.randn(2, 2, 40, 36, generator=torch.Generator().manual_seed(21))
    y = torch.randn(2, 2, 18, 20, generator=torch.Generator().manual_seed(22))
    assert _rel(crop_t(x.to(KDEV), (18, 20)), ref_crop(x, (18, 20))) < 1e-5
    assert _rel(pad_t(y.to(KDEV), (40, 36)), _fft_pad(y, (40, 36))) < 1e-5


def test_tile_spec_parsing(monkeypatch):
    assert lt.parse_tiles("32, 64,16,128") == lt.TileConfig(BM=32, BN=64, BK=16, BQ=128, num_warps=4, num_stages=3)
    assert lt.parse_tiles("128,64,64,32,8,2") == lt.TileConfig(BM=128, BN=64, BK=64, BQ=32, num_warps=8,
                                                               num_stages=2)
    for bad, match in (("16,16,16", "BN,BK,BQ"), ("16,16,16,x", "BN,BK,BQ"), ("16,16,16,24", "BQ must be a "
                       "power of two"), ("8,16,16,16", "BM must be"), ("16,16,512,16", "BK must be"),
                       ("16,16,16,16,3", "num_warps"), ("16,16,16,16,4,0", "num_stages")):
        with pytest.raises(ValueError, match=match):
            lt.parse_tiles(bad)
    monkeypatch.setenv(lt.TILES_ENV, "16,16")
    with pytest.raises(ValueError, match=lt.TILES_ENV):
        lt.config_for(8, 8, 16, 16)
    monkeypatch.delenv(lt.TILES_ENV)
    # all output rows in one program: 160 = 128 + 32, 224 = 128 + 128, 18 = 16 + 16, 300 = two groups of 128 + 128
    assert lt.config_for(160, 160, 224, 224) == lt.TileConfig(BM=128, BN=64, BK=64, BQ=32, num_warps=8, num_stages=3,
                                                               BM2=32)
    assert (lt.config_for(224, 224, 160, 160).BM2, lt.config_for(18, 20, 40, 36).BM2) == (128, 16)
    assert lt.config_for(16, 8, 16, 16).BM2 == 0 and lt.config_for(300, 8, 8, 8).BM2 == 128
    assert lt.parse_tiles("32+16,16,16,16") == lt.TileConfig(BM=32, BN=16, BK=16, BQ=16, num_warps=4, num_stages=3,
                                                             BM2=16)
    with pytest.raises(ValueError, match="BM2 must be"):
        lt.parse_tiles("32+24,16,16,16")


def _bench_gpu():
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "scripts", "bench_gpu.py")
    spec = importlib.util.spec_from_file_location("bench_gpu_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@runs_kernel
def test_sweep_checks_each_configuration_before_timing_it():
    # scripts/bench_gpu.py --sweep runs sweep_one per tile configuration: a right one is timed, a wrong one (here
    # the crop with one 16 x 16 output tile missing, what a dropped tile offset gives) is flagged and never timed.
    bench = _bench_gpu()
    x = torch.randn(1, 2, 40, 36, generator=torch.Generator().manual_seed(23)).to(KDEV)
    ref = et.lowfreq_crop(x.cpu(), (18, 20))  # the GEMM path (the sweep uses cuBLAS's)
    bands = lt.BandCache()
    timed = []

    def timer(f):
        f()
        timed.append(True)
        return 1.0

    def right(c):
        return lt.crop(x, (18, 20), bands, c)

    def tile_missing(c):
        out = right(c)
        out[..., 16:, :16] = 0
        return out

    good = bench.sweep_one("crop", "highest", SMALL_TILES, right, ref, timer)
    assert not good["wrong"] and good["ms"] == 1.0 and good["max_rel_err"] < 1e-5 and len(timed) == 1
    bad = bench.sweep_one("crop", "medium", SMALL_TILES, tile_missing, ref, timer)
    assert bad["wrong"] and bad["ms"] is None and bad["max_rel_err"] > 0.05 and len(timed) == 1

    def nan(c):
        return right(c) * float("nan")

    assert bench.sweep_one("crop", "medium", SMALL_TILES, nan, ref, timer)["wrong"] and len(timed) == 1

    def raises(c):
        raise RuntimeError("out of resources: shared memory")

    row = bench.sweep_one("pad", "high", SMALL_TILES, raises, ref, timer)
    assert row["failed"] == "RuntimeError" and row["ms"] is None and len(timed) == 1


def test_band_cache_hit_is_atomic_against_an_eviction():
    # Deterministic form of the race: thread 1's hit pauses between the lookup and move_to_end while thread 2 inserts
    # enough keys to evict it. With the lock, thread 2 waits (the pause times out) and both finish; without it, thread
    # 2 evicts the key and thread 1's move_to_end raises KeyError.
    import threading
    from collections import OrderedDict

    cache = lt.BandCache(capacity=2)
    x = torch.zeros(1, 12, 12)
    cache.get(x, 12, 12, 4, 4)
    paused, evicted, errors = threading.Event(), threading.Event(), []

    class PausingDict(OrderedDict):
        def get(self, key, default=None):
            value = super().get(key, default)
            if threading.current_thread().name == "hit" and not paused.is_set():
                paused.set()
                evicted.wait(0.5)
            return value

    cache._entries = PausingDict(cache._entries)

    def run(fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    def evict():
        paused.wait(5)
        for b in (2, 3, 5):
            cache.get(x, 12, 12, b, b)
        evicted.set()

    threads = [threading.Thread(target=run, args=(lambda: cache.get(x, 12, 12, 4, 4),), name="hit"),
               threading.Thread(target=run, args=(evict,), name="evict")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert list(cache._entries) == [(12, 12, b, b, x.device) for b in (3, 5)]


def test_band_cache_treats_graph_capture_as_a_miss(monkeypatch):
    # While a CUDA graph is being captured the cache neither hands out a cached entry (a later eviction would free
    # memory the graph reads) nor stores what the graph builds (its private pool is reused later).
    cache = lt.BandCache()
    x = torch.zeros(1, 8, 8)
    cached = cache.get(x, 8, 8, 4, 4)
    monkeypatch.setattr(lt, "_capturing", lambda t: True)
    during = cache.get(x, 8, 8, 4, 4)
    assert during is not cached and torch.equal(during.R_h, cached.R_h)
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(during.tensors(), cached.tensors()))
    cache.get(x, 8, 8, 2, 2)
    assert len(cache) == 1
    monkeypatch.setattr(lt, "_capturing", lambda t: False)
    assert cache.get(x, 8, 8, 4, 4) is cached


@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")
def test_band_cache_hit_on_another_stream_waits_for_the_build():
    # The build is queued on stream A behind a long sleep; a hit on stream B must wait for it (the entry's event)
    # before reading the matrices, or it copies memory that has not been written yet.
    cache = lt.BandCache()
    x = torch.zeros(1, 64, 64, device="cuda")
    a, b = torch.cuda.Stream(), torch.cuda.Stream()
    with torch.cuda.stream(a):
        torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU time
        cache.get(x, 64, 64, 30, 30)
    with torch.cuda.stream(b):
        hit = cache.get(x, 64, 64, 30, 30)
        copy = hit.R_h.clone()
    torch.cuda.synchronize()
    R, _ = lt.band_vectors(64, 30, torch.device("cpu"))
    assert torch.allclose(copy.cpu(), R.float(), atol=1e-6)


@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")
def test_triton_capture_does_not_use_cached_bands(monkeypatch):
    # A size already cached: the graph must not point to the cached matrices, which eviction may free later.
    monkeypatch.setenv("ETRAIN_LOWFREQ_BACKEND", "triton")
    x = torch.randn(2, 3, 40, 36, device="cuda")
    ref = et.lowfreq_crop(x.cpu().double(), (18, 20))
    et.lowfreq_crop(x, (18, 20))  # cached now
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.cuda.graph(g):
        out = et.lowfreq_crop(x, (18, 20))
    torch.cuda.current_stream().wait_stream(s)
    lowfreq_mod._TRITON_BANDS._entries.clear()  # evict everything: the graph must not depend on it
    torch.cuda.empty_cache()
    junk = [torch.full((1 << 20,), 7.0, device="cuda") for _ in range(8)]
    g.replay()
    torch.cuda.synchronize()
    assert _rel(out, ref) < 1e-5
    del junk
