"""lowfreq_crop / lowfreq_pad / lowpass on every device (CPU, and CUDA when present) against independent torch.fft
references (lowfreq_reference.py, float64 on the CPU), plus autograd, torch.library.opcheck, torch.compile,
torch.export, fake tensors and bad input. One suite: each test takes the ``device`` fixture (conftest.py)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch._subclasses.fake_tensor import FakeTensorMode

import efficienttrain_ext as et
from conftest import requires_cuda
from lowfreq_reference import band_indices, ref_crop, ref_freq_crop_efficienttrain, ref_lowpass

# Max abs error allowed relative to max |reference| (inputs are O(1) random normal), per device: the CPU computes
# fp16/bf16 in fp32 and rounds once; CUDA runs them as bf16x3 GEMMs, whose error must stay at the output's own
# rounding (half an ulp is 2^-9 (bf16) / 2^-12 (fp16) of the value).
TOL = {
    "cpu": {torch.float64: 2e-11, torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.6e-2},
    "cuda": {torch.float64: 1e-11, torch.float32: 1e-4, torch.float16: 2**-10, torch.bfloat16: 2**-8},
}
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture(autouse=True)
def _full_fp32():
    # fp32 on CUDA may use TF32 when the user allows it; the tests pin full fp32 (one test checks the setting)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


def assert_close_rel(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, device) -> None:
    assert out.shape == ref.shape and out.device.type == torch.device(device).type
    err = (out.double().cpu() - ref.double().cpu()).abs().max().item() if out.numel() else 0.0
    scale = max(ref.abs().max().item(), 1e-30) if ref.numel() else 1.0
    tol = TOL[torch.device(device).type][dtype]
    assert err <= tol * scale, f"{dtype} on {device}: max error {err:.3e} vs scale {scale:.3e}"


@settings(max_examples=60, deadline=None)
@given(
    lead=st.lists(st.integers(0, 3), min_size=0, max_size=2),
    h=st.integers(1, 24),
    w=st.integers(1, 24),
    fh=st.floats(0.0, 1.0),
    fw=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
@pytest.mark.parametrize("dev", ["cpu", pytest.param("cuda", marks=requires_cuda)])
def test_crop_matches_fft_reference_random_shapes(dev, lead, h, w, fh, fw, seed):
    bh, bw = max(1, round(fh * h)), max(1, round(fw * w))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, h, w, generator=g, dtype=torch.float64)
    y = et.lowfreq_crop(x.to(dev), (bh, bw))
    assert y.shape == (*lead, bh, bw)
    if x.numel():
        assert_close_rel(y, ref_crop(x, (bh, bw)), torch.float64, dev)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,size", [((2, 3, 32, 32), (16, 16)), ((4, 17, 23), (9, 12)), ((1, 3, 64, 48), (31, 48)),
                                        ((1, 3, 224, 224), (160, 160)), ((5, 8, 7), (3, 7))])
def test_crop_dtypes(device, dtype, shape, size, gen):
    xd = torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)
    y = et.lowfreq_crop(xd.to(device), size)
    assert y.dtype == dtype and y.is_contiguous() and y.shape == (*shape[:-2], *size)
    # Reference on the input as the op sees it (after rounding to dtype); error then comes from the op alone.
    assert_close_rel(y, ref_crop(xd.double(), size), dtype, device)


# Tile-friendly and awkward sides, odd/even/non-square bands, identity, a band one short of full size.
SHAPE_CASES = [((2, 3, 32, 32), (5, 7)), ((4, 48, 32), (21, 30)), ((2, 64, 64), (64, 64)), ((1, 2, 96, 112), (37, 112)),
               ((3, 224, 224), (160, 160)), ((2, 256, 128), (255, 128))]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape,size", SHAPE_CASES)
def test_crop_shapes(device, dtype, shape, size):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(*shape, generator=g).to(dtype)
    y = et.lowfreq_crop(x.to(device), size)
    assert y.shape == (*shape[:-2], *size) and y.dtype == dtype
    assert_close_rel(y, ref_crop(x.double(), size), dtype, device)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pad_dtypes(device, dtype):
    g = torch.Generator().manual_seed(8)
    y = torch.randn(4, 3, 20, 18, generator=g).to(dtype)
    out = et.lowfreq_pad(y.to(device), (32, 30))
    assert out.dtype == dtype and out.shape == (4, 3, 32, 30)
    assert_close_rel(out, et.lowfreq_pad(y.double(), (32, 30)), dtype, device)


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced", "expanded", "offset"])
def test_crop_layouts(device, layout, gen):
    base = torch.randn(2, 3, 40, 36, generator=gen).to(device)
    if layout == "channels_last":
        x = base.to(memory_format=torch.channels_last)
    elif layout == "transposed":
        x = base.transpose(-1, -2)
    elif layout == "sliced":
        x = base[:, :, 2:38:1, ::2]
    elif layout == "expanded":
        x = base[:1, :1].expand(4, 3, 40, 36)
    else:  # a 4-byte offset: not 16/32-byte aligned
        x = torch.randn(3 * 32 * 32 + 1, generator=gen).to(device)[1:].view(3, 32, 32)
    if layout != "offset":
        assert not x.is_contiguous()
    y = et.lowfreq_crop(x, (14, 12))
    assert_close_rel(y, ref_crop(x.cpu(), (14, 12)), torch.float32, device)


@pytest.mark.parametrize("n,b", [(16, 8), (224, 160), (224, 96), (32, 12)])
def test_equals_efficienttrain_reference_freq_crop(device, n, b, gen):
    x = torch.randn(2, 3, n, n, generator=gen, dtype=torch.float64)
    assert_close_rel(et.lowfreq_crop(x.to(device), b), ref_freq_crop_efficienttrain(x, b), torch.float64, device)


def test_large_size_precision(device, gen):
    # Band matrices are built in float64 with integer-reduced phases: large planes stay exact.
    x = torch.randn(1, 512, 384, generator=gen, dtype=torch.float64)
    assert_close_rel(et.lowfreq_crop(x.to(device), (300, 257)), ref_crop(x, (300, 257)), torch.float64, device)


@pytest.mark.parametrize("h,w,bh,bw", [(12, 12, 6, 6), (11, 10, 5, 7), (9, 14, 9, 4), (8, 8, 8, 8)])
def test_adjoint_identity(device, h, w, bh, bw, gen):
    x = torch.randn(3, h, w, generator=gen, dtype=torch.float64).to(device)
    y = torch.randn(3, bh, bw, generator=gen, dtype=torch.float64).to(device)
    lhs = (et.lowfreq_crop(x, (bh, bw)) * y).sum()
    rhs = (x * et.lowfreq_pad(y, (h, w))).sum()
    assert abs(lhs.item() - rhs.item()) <= 1e-12 * max(1.0, abs(lhs.item()))


@pytest.mark.parametrize("h,w,bh,bw", [(12, 12, 6, 6), (9, 10, 5, 7)])
def test_pad_matches_explicit_transpose(device, h, w, bh, bw):
    # Materialise crop as a matrix from the fft reference; pad must be its transpose.
    eye = torch.eye(h * w, dtype=torch.float64).view(h * w, h, w)
    a = ref_crop(eye, (bh, bw)).reshape(h * w, bh * bw)  # column j of A^T
    y = torch.randn(bh * bw, dtype=torch.float64)
    expected = (a @ y).view(h, w)
    assert_close_rel(et.lowfreq_pad(y.view(bh, bw).to(device), (h, w)), expected, torch.float64, device)


def test_mean_preserved_and_identity_at_full_size(device, gen):
    x = (torch.randn(4, 3, 30, 26, generator=gen, dtype=torch.float64) + 2.0).to(device)
    for size in [(1, 1), (7, 8), (16, 13), (30, 26)]:
        y = et.lowfreq_crop(x, size)
        torch.testing.assert_close(y.mean(dim=(-2, -1)), x.mean(dim=(-2, -1)), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(et.lowfreq_crop(x, (30, 26)), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(et.lowfreq_pad(x, (30, 26)), x, rtol=0, atol=1e-12)


def test_linearity(device, gen):
    a, b = torch.randn(2, 3, 20, 20, generator=gen, dtype=torch.float64).to(device).unbind(0)
    lhs = et.lowfreq_crop(2.5 * a - 0.75 * b, 12)
    rhs = 2.5 * et.lowfreq_crop(a, 12) - 0.75 * et.lowfreq_crop(b, 12)
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("h,w,bh,bw", [(16, 16, 8, 8), (15, 12, 7, 6)])
def test_proposition1_high_frequencies_do_not_matter(device, h, w, bh, bw, gen):
    """Changing only frequencies outside the kept band leaves the output unchanged; the band is recoverable."""
    x = torch.randn(2, h, w, generator=gen, dtype=torch.float64)
    spec = torch.fft.fft2(x)
    outside = torch.ones(h, w, dtype=torch.bool)
    outside[torch.tensor(band_indices(h, bh))[:, None], torch.tensor(band_indices(w, bw))[None, :]] = False
    noise = torch.fft.fft2(torch.randn(2, h, w, generator=gen, dtype=torch.float64))
    # Mirror the band so the perturbation stays real: outside(-k) == outside(k) only for odd bands; keep
    # frequencies whose mirror is kept untouched too.
    mirror = outside & torch.roll(torch.flip(outside, dims=(0, 1)), shifts=(1, 1), dims=(0, 1))
    x2 = torch.fft.ifft2(spec + noise * mirror).real
    assert (x2 - x).abs().max() > 0.1
    y, y2 = et.lowfreq_crop(x.to(device), (bh, bw)), et.lowfreq_crop(x2.to(device), (bh, bw))
    torch.testing.assert_close(y2, y, rtol=0, atol=1e-12)
    if bh % 2 == 1 and bw % 2 == 1:
        # Odd bands are symmetric: the crop's spectrum is exactly the kept spectrum, scaled.
        y_spec = torch.fft.fft2(y.cpu())
        kept = spec[..., band_indices(h, bh), :][..., band_indices(w, bw)]
        torch.testing.assert_close(y_spec * (h * w) / (bh * bw), kept, rtol=0, atol=1e-9)


@pytest.mark.parametrize("h,w,bh,bw", [(16, 16, 8, 8), (15, 12, 7, 6), (9, 8, 5, 6), (10, 10, 3, 3)])
def test_lowpass_is_spectral_upsampling_of_crop(device, h, w, bh, bw, gen):
    x = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
    out = et.lowpass(x.to(device), (bh, bw))
    assert out.shape == x.shape
    assert_close_rel(out, ref_lowpass(x, (bh, bw)), torch.float64, device)
    if bh % 2 and bw % 2:
        mask = torch.zeros(h, w, dtype=torch.bool)
        mask[torch.tensor(band_indices(h, bh))[:, None], torch.tensor(band_indices(w, bw))[None, :]] = True
        ideal = torch.fft.ifft2(torch.fft.fft2(x) * mask).real
        assert_close_rel(out, ideal, torch.float64, device)


def test_gradcheck_and_gradgradcheck(device, gen):
    x = torch.randn(2, 7, 6, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    y = torch.randn(2, 4, 4, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: et.lowfreq_crop(t, (4, 3)), (x,))
    assert torch.autograd.gradgradcheck(lambda t: et.lowfreq_crop(t, (4, 4)), (x,))
    assert torch.autograd.gradcheck(lambda t: et.lowfreq_pad(t, (8, 6)), (y,))
    assert torch.autograd.gradgradcheck(lambda t: et.lowfreq_pad(t, (9, 8)), (y,))
    assert torch.autograd.gradcheck(lambda t: et.lowpass(t, (4, 4)), (x,))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_cpu_folded_crop_and_pad_equal_the_gemm_form_and_torch_fft(dtype):
    # The CPU crop and pad fold by the band matrices' centro-symmetry (half the GEMM FLOPs,
    # csrc/lowfreq/lowfreq_cpu.cpp); lowfreq_crop_gemm / lowfreq_pad_gemm are the plain GEMM form. All against
    # torch.fft (the pad: its adjoint, by autograd) on sizes where every fold case occurs: n = 1 and 2 (no pairs), odd
    # and even n and b, b = 1, b = 2 (only the Nyquist row in O), full size (no correction).
    g = torch.Generator().manual_seed(17)
    tol = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 2 ** -8}[dtype]
    for H, W, bh, bw in ((1, 1, 1, 1), (2, 2, 1, 1), (2, 3, 2, 2), (4, 4, 2, 2), (3, 8, 3, 5), (9, 9, 4, 8),
                         (16, 15, 16, 15), (20, 22, 20, 10), (31, 33, 18, 2), (224, 224, 160, 160), (40, 36, 19, 21)):
        x = torch.randn(3, H, W, generator=g, dtype=torch.float64).to(dtype)
        ref = ref_crop(x.double(), (bh, bw))
        folded = torch.ops.etrain.lowfreq_crop(x, [bh, bw])
        plain = torch.ops.etrain.lowfreq_crop_gemm(x, [bh, bw])
        assert folded.dtype == dtype and folded.shape == (3, bh, bw)
        scale = ref.abs().max().item()
        for name, out in (("folded", folded), ("gemm", plain)):
            err = (out.double() - ref).abs().max().item()
            assert err <= tol * scale, f"{name} {dtype} {(H, W, bh, bw)}: {err:.2e} vs scale {scale:.2e}"
        y = torch.randn(3, bh, bw, generator=g, dtype=torch.float64).to(dtype)
        xd = torch.zeros(3, H, W, dtype=torch.float64, requires_grad=True)
        (ref,) = torch.autograd.grad(ref_crop(xd, (bh, bw)), xd, y.double())
        scale = ref.abs().max().item()
        for name, out in (("folded pad", torch.ops.etrain.lowfreq_pad(y, [H, W])),
                          ("gemm pad", torch.ops.etrain.lowfreq_pad_gemm(y, [H, W]))):
            assert out.dtype == dtype and out.shape == (3, H, W)
            err = (out.double() - ref).abs().max().item()
            assert err <= tol * scale, f"{name} {dtype} {(H, W, bh, bw)}: {err:.2e} vs scale {scale:.2e}"


def test_empty_batch(device):
    assert et.lowfreq_crop(torch.empty(0, 3, 16, 16, device=device), 8).shape == (0, 3, 8, 8)
    assert et.lowfreq_pad(torch.empty(0, 8, 8, device=device), 16).shape == (0, 16, 16)


def test_nan_inf_propagate(device):
    x = torch.randn(2, 16, 16)
    x[0, 3, 4] = float("nan")
    x[1, 0, 0] = float("inf")
    y = et.lowfreq_crop(x.to(device), 8)
    assert torch.isnan(y[0]).all()  # every output sample mixes every input sample
    assert not torch.isfinite(y[1]).all()
    assert torch.isfinite(et.lowfreq_crop(torch.randn(2, 16, 16, device=device), 8)).all()


@requires_cuda
def test_cuda_tf32_follows_the_matmul_precision_setting():
    # With TF32 allowed the fp32 GEMMs may use TF32: error at TF32 level; without, at fp32 level.
    x = torch.randn(4, 3, 64, 64, device="cuda")
    ref = ref_crop(x.cpu().double(), (40, 40))
    scale = ref.abs().max().item()
    torch.backends.cuda.matmul.allow_tf32 = True
    assert (et.lowfreq_crop(x, 40).cpu().double() - ref).abs().max().item() <= 3e-3 * scale
    torch.backends.cuda.matmul.allow_tf32 = False
    assert (et.lowfreq_crop(x, 40).cpu().double() - ref).abs().max().item() <= 1e-5 * scale


@requires_cuda
def test_cuda_other_device_index():
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    x = torch.randn(2, 16, 16, device="cuda:1")
    assert et.lowfreq_crop(x, 8).device == x.device


# ---- torch.library: opcheck, compile, export, fake tensors


@pytest.mark.parametrize("op,shape,dtype,size", [
    ("lowfreq_crop", (2, 3, 12, 10), torch.float64, [6, 5]),
    ("lowfreq_crop", (2, 9, 9), torch.float32, [4, 4]),
    ("lowfreq_crop", (2, 9, 9), torch.bfloat16, [4, 7]),
    ("lowfreq_pad", (2, 3, 6, 5), torch.float64, [12, 10]),
    ("lowfreq_pad", (4, 4), torch.float16, [8, 8]),
])
def test_opcheck(device, op, shape, dtype, size):
    x = torch.randn(shape, dtype=dtype, device=device).requires_grad_(dtype == torch.float64)
    torch.library.opcheck(getattr(torch.ops.etrain, op).default, (x, size))


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(et.lowfreq_crop(x, (12, 10))).mean(dim=(-2, -1))


def test_compile_fullgraph_forward_backward(device):
    torch.manual_seed(0)
    model = Small().to(device)
    x = torch.randn(2, 3, 20, 18, device=device, requires_grad=True)
    eager = model(x)
    (gx_eager,) = torch.autograd.grad(eager.sum(), x)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    (gx,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(gx, gx_eager)


def test_compile_inductor_matches_reference(device):
    fn = torch.compile(lambda t: et.lowfreq_crop(t, 8) * 2.0, fullgraph=True)
    x = torch.randn(2, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(fn(x.to(device)).cpu(), ref_crop(x, (8, 8)) * 2.0)


def test_export(device):
    model = Small().eval().to(device)
    x = torch.randn(2, 3, 20, 18, device=device)
    ep = torch.export.export(model, (x,))
    assert any("etrain.lowfreq_crop" in str(n.target) for n in ep.graph.nodes)
    torch.testing.assert_close(ep.module()(x), model(x))


def test_fake_tensor_shape_and_errors():
    with FakeTensorMode():
        x = torch.empty(5, 3, 32, 30)
        assert torch.ops.etrain.lowfreq_crop(x, [16, 15]).shape == (5, 3, 16, 15)
        assert torch.ops.etrain.lowfreq_pad(torch.empty(2, 7, 5), [9, 9]).shape == (2, 9, 9)
        with pytest.raises(ValueError, match="must not exceed"):
            torch.ops.etrain.lowfreq_crop(x, [33, 15])
    meta = torch.empty(2, 3, 32, 32, device="meta")
    assert torch.ops.etrain.lowfreq_crop(meta, [8, 8]).device.type == "meta"


# ---- bad input: the Python API, the raw op, and fake tensors give the same error

BAD_RAW = [
    ("lowfreq_crop", (16,), torch.float32, [8, 8], "at least 2 dims"),
    ("lowfreq_crop", (2, 16, 16), torch.float32, [0, 8], ">= 1"),
    ("lowfreq_crop", (2, 16, 16), torch.float32, [8, -1], ">= 1"),
    ("lowfreq_crop", (2, 16, 16), torch.float32, [8, 17], "must not exceed"),
    ("lowfreq_crop", (2, 16, 16), torch.int32, [8, 8], "real floating dtype"),
    ("lowfreq_crop", (2, 16, 16), torch.uint8, [8, 8], "real floating dtype"),
    ("lowfreq_crop", (2, 16, 16), torch.bool, [8, 8], "real floating dtype"),
    ("lowfreq_crop", (2, 16, 16), torch.complex128, [8, 8], "real floating dtype"),
    ("lowfreq_crop", (2, 0, 16), torch.float32, [1, 8], "spatial size must be >= 1"),
    ("lowfreq_pad", (2, 16, 16), torch.float32, [8, 16], "at least the input"),
]


@pytest.mark.parametrize("op,shape,dtype,size,match", BAD_RAW, ids=[f"{c[0]}-{c[4]}-{c[2]}" for c in BAD_RAW])
def test_bad_input_raw_op_and_fake_agree(device, op, shape, dtype, size, match):
    # Direct torch.ops calls bypass the Python wrapper: the C++ kernel must raise a ValueError, never crash; the
    # fake kernel (torch.compile / export / meta) states the same rule with the same message.
    fn = getattr(torch.ops.etrain, op)
    with pytest.raises(ValueError, match=match) as real:
        fn(torch.zeros(shape, dtype=dtype, device=device), size)
    with FakeTensorMode(), pytest.raises(ValueError, match=match) as fake:
        fn(torch.zeros(shape, dtype=dtype), size)
    assert str(real.value).splitlines()[0] == str(fake.value).splitlines()[0]


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda d: et.lowfreq_crop(torch.randn(16, device=d), 8), ValueError, "at least 2 dims"),
        (lambda d: et.lowfreq_crop(torch.randn(2, 16, 16, device=d), 0), ValueError, ">= 1"),
        (lambda d: et.lowfreq_crop(torch.randn(2, 16, 12, device=d), (8, 13)), ValueError, "must not exceed"),
        (lambda d: et.lowfreq_crop(torch.zeros(2, 16, 16, dtype=torch.int64, device=d), 8), ValueError,
         "real floating dtype"),
        (lambda d: et.lowfreq_crop(torch.randn(2, 16, 16, device=d), (8, 8, 8)), TypeError, "pair of ints"),
        (lambda d: et.lowfreq_crop(torch.randn(2, 16, 16, device=d), 8.0), TypeError, "pair of ints"),
        (lambda d: et.lowfreq_crop(torch.randn(2, 16, 16, device=d), True), TypeError, "pair of ints"),
        (lambda d: et.lowfreq_crop([[1.0]], 1), TypeError, "torch.Tensor"),
        (lambda d: et.lowfreq_pad(torch.randn(2, 16, 16, device=d), 8), ValueError, "at least the input"),
        (lambda d: et.lowpass(torch.randn(2, 16, 16, device=d), 20), ValueError, "must not exceed"),
    ],
)
def test_bad_input_python_api(device, call, exc, match):
    with pytest.raises(exc, match=match):
        call(device)


def test_ops_inside_autocast_keep_their_dtype(device):
    # Under torch.autocast the inner GEMMs used to be autocast to bf16 while the op wrote into fp32 buffers
    # ("Expected out tensor to have dtype BFloat16"). The ops now run as they do outside autocast.
    dt = torch.bfloat16
    conv = torch.nn.Conv2d(3, 3, 3, padding=1).to(device)
    x = torch.randn(2, 3, 16, 12, device=device)
    with torch.autocast(device.type, dtype=dt):
        h = conv(x)  # bf16 under autocast
        outs = {"crop fp32": et.lowfreq_crop(x, (8, 6)), "pad fp32": et.lowfreq_pad(x, (20, 14)),
                "lowpass fp32": et.lowpass(x, 8), "crop bf16": et.lowfreq_crop(h, (8, 6))}
    assert h.dtype == dt
    refs = {"crop fp32": et.lowfreq_crop(x, (8, 6)), "pad fp32": et.lowfreq_pad(x, (20, 14)),
            "lowpass fp32": et.lowpass(x, 8), "crop bf16": et.lowfreq_crop(h, (8, 6))}
    for name, out in outs.items():
        assert out.dtype == refs[name].dtype, name
        assert torch.equal(out, refs[name]), name
    # and inside a model's forward, with backward
    x.requires_grad_()
    with torch.autocast(device.type, dtype=dt):
        loss = conv(et.lowfreq_crop(x, 8)).float().square().mean()
    loss.backward()
    assert x.grad is not None and x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()
