"""CUDA kernels against the CPU kernels and the float64 torch.fft reference (skipped without a GPU)."""

import pytest
import torch

import efficienttrain_ext as et
from conftest import requires_cuda
from lowfreq_reference import ref_crop

pytestmark = requires_cuda

# fp32 on CUDA may use TF32 when the user allows it; tests pin full fp32. fp16/bf16 run as bf16x3 GEMMs: their
# error must stay at the output's own rounding (half an ulp is 2^-9 (bf16) / 2^-12 (fp16) of the value).
TOL = {torch.float64: 1e-11, torch.float32: 1e-4, torch.float16: 2**-10, torch.bfloat16: 2**-8}


@pytest.fixture(autouse=True)
def _full_fp32():
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


def _rel_err(a, b):
    return ((a.double().cpu() - b.double().cpu()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize(
    "shape,size", [((2, 3, 32, 32), (16, 16)), ((3, 17, 23), (9, 12)), ((1, 3, 224, 224), (160, 160)), ((5, 8, 7), (3, 7))]
)
def test_cuda_crop_matches_cpu_and_reference(dtype, shape, size):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(*shape, generator=g).to(dtype)
    y_cuda = et.lowfreq_crop(x.cuda(), size)
    assert y_cuda.is_cuda and y_cuda.dtype == dtype and y_cuda.shape == (*shape[:-2], *size)
    ref = ref_crop(x.double(), size)
    assert _rel_err(y_cuda, ref) <= TOL[dtype]
    assert _rel_err(y_cuda, et.lowfreq_crop(x, size)) <= 2 * TOL[dtype]


@pytest.mark.parametrize("dtype", list(TOL))
def test_cuda_pad_matches_cpu(dtype):
    g = torch.Generator().manual_seed(8)
    y = torch.randn(4, 3, 20, 18, generator=g).to(dtype)
    out = et.lowfreq_pad(y.cuda(), (32, 30))
    assert _rel_err(out, et.lowfreq_pad(y.double(), (32, 30))) <= TOL[dtype]


def test_cuda_layouts_and_noncontiguous():
    x = torch.randn(2, 3, 40, 36, device="cuda").to(memory_format=torch.channels_last)
    assert _rel_err(et.lowfreq_crop(x, (14, 12)), ref_crop(x.cpu().double(), (14, 12))) <= 1e-4
    xt = torch.randn(2, 3, 36, 40, device="cuda").transpose(-1, -2)
    assert _rel_err(et.lowfreq_crop(xt, (14, 12)), ref_crop(xt.cpu().double(), (14, 12))) <= 1e-4


def test_cuda_gradcheck():
    x = torch.randn(2, 7, 6, dtype=torch.float64, device="cuda", requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: et.lowfreq_crop(t, (4, 4)), (x,))
    assert torch.autograd.gradgradcheck(lambda t: et.lowfreq_crop(t, (4, 3)), (x,))


def test_cuda_opcheck_and_compile():
    x = torch.randn(2, 3, 12, 10, dtype=torch.float64, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.etrain.lowfreq_crop.default, (x, [6, 5]))
    fn = torch.compile(lambda t: et.lowfreq_crop(t, 8).sum(dim=-1), fullgraph=True)
    x2 = torch.randn(4, 16, 16, device="cuda")
    torch.testing.assert_close(fn(x2), et.lowfreq_crop(x2, 8).sum(dim=-1))


def test_cuda_other_device_index_and_empty():
    assert et.lowfreq_crop(torch.empty(0, 3, 16, 16, device="cuda"), 8).shape == (0, 3, 8, 8)
    if torch.cuda.device_count() > 1:
        x = torch.randn(2, 16, 16, device="cuda:1")
        assert et.lowfreq_crop(x, 8).device == x.device


def test_cuda_bad_input():
    with pytest.raises(ValueError, match="real floating dtype"):
        et.lowfreq_crop(torch.zeros(2, 16, 16, dtype=torch.int32, device="cuda"), 8)
    with pytest.raises(ValueError, match="must not exceed"):
        torch.ops.etrain.lowfreq_crop(torch.zeros(2, 16, 16, device="cuda"), [17, 8])


def test_cuda_nan_propagates():
    x = torch.randn(2, 16, 16, device="cuda")
    x[0, 1, 1] = float("nan")
    y = et.lowfreq_crop(x, 8)
    assert torch.isnan(y[0]).all() and torch.isfinite(y[1]).all()


# Tile-friendly and awkward sides, odd/even/non-square bands, identity, a band one short of full size.
SHAPE_CASES = [((2, 3, 32, 32), (5, 7)), ((4, 48, 32), (21, 30)), ((2, 64, 64), (64, 64)), ((1, 2, 96, 112), (37, 112)),
               ((3, 224, 224), (160, 160)), ((2, 256, 128), (255, 128))]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape,size", SHAPE_CASES)
def test_cuda_shapes_half_and_float(dtype, shape, size):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(*shape, generator=g).to(dtype)
    y = et.lowfreq_crop(x.cuda(), size)
    assert y.shape == (*shape[:-2], *size) and y.dtype == dtype
    assert _rel_err(y, ref_crop(x.double(), size)) <= TOL[dtype]


def test_cuda_tf32_follows_the_matmul_precision_setting():
    # With TF32 allowed the fp32 GEMMs may use TF32: error at TF32 level; without, at fp32 level.
    x = torch.randn(4, 3, 64, 64, device="cuda")
    ref = ref_crop(x.cpu().double(), (40, 40))
    torch.backends.cuda.matmul.allow_tf32 = True
    assert _rel_err(et.lowfreq_crop(x, 40), ref) <= 3e-3
    torch.backends.cuda.matmul.allow_tf32 = False
    assert _rel_err(et.lowfreq_crop(x, 40), ref) <= 1e-5


def test_cuda_offset_view_input():
    base = torch.randn(3 * 32 * 32 + 1, device="cuda")
    x = base[1:].view(3, 32, 32)  # 4-byte offset: not 32-byte aligned
    assert _rel_err(et.lowfreq_crop(x, 16), ref_crop(x.cpu().double(), (16, 16))) <= 1e-4
