"""lowfreq_crop / lowfreq_pad / lowpass against independent torch.fft references (lowfreq_reference.py)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import efficienttrain_ext as et
from lowfreq_reference import band_indices, ref_crop, ref_freq_crop_efficienttrain, ref_lowpass

# Max abs error allowed relative to max |reference| (inputs are O(1) random normal).
TOL = {torch.float64: 2e-11, torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
DTYPES = list(TOL)


def assert_close_rel(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
    assert out.shape == ref.shape
    err = (out.double() - ref.double()).abs().max().item()
    scale = max(ref.abs().max().item(), 1e-30)
    assert err <= TOL[dtype] * scale, f"{dtype}: max error {err:.3e} vs scale {scale:.3e}"


@settings(max_examples=60, deadline=None)
@given(
    lead=st.lists(st.integers(0, 3), min_size=0, max_size=2),
    h=st.integers(1, 24),
    w=st.integers(1, 24),
    fh=st.floats(0.0, 1.0),
    fw=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_crop_matches_fft_reference_random_shapes(lead, h, w, fh, fw, seed):
    bh, bw = max(1, round(fh * h)), max(1, round(fw * w))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, h, w, generator=g, dtype=torch.float64)
    y = et.lowfreq_crop(x, (bh, bw))
    assert y.shape == (*lead, bh, bw)
    if x.numel():
        assert_close_rel(y, ref_crop(x, (bh, bw)), torch.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,size", [((2, 3, 32, 32), (16, 16)), ((4, 17, 23), (9, 12)), ((1, 3, 64, 48), (31, 48))])
def test_crop_dtypes(dtype, shape, size, gen):
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    xd = x.to(dtype)
    y = et.lowfreq_crop(xd, size)
    assert y.dtype == dtype and y.is_contiguous()
    # Reference on the input as the op sees it (after rounding to dtype); error then comes from the op alone.
    assert_close_rel(y, ref_crop(xd.double(), size), dtype)


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced", "expanded"])
def test_crop_layouts(layout, gen):
    base = torch.randn(2, 3, 40, 36, generator=gen)
    if layout == "channels_last":
        x = base.to(memory_format=torch.channels_last)
    elif layout == "transposed":
        x = base.transpose(-1, -2)
    elif layout == "sliced":
        x = base[:, :, 2:38:1, ::2]
    else:
        x = base[:1, :1].expand(4, 3, 40, 36)
    assert not x.is_contiguous()
    y = et.lowfreq_crop(x, (14, 12))
    assert_close_rel(y, ref_crop(x, (14, 12)), torch.float32)


@pytest.mark.parametrize("n,b", [(16, 8), (224, 160), (224, 96), (32, 12)])
def test_equals_efficienttrain_reference_freq_crop(n, b, gen):
    x = torch.randn(2, 3, n, n, generator=gen, dtype=torch.float64)
    assert_close_rel(et.lowfreq_crop(x, b), ref_freq_crop_efficienttrain(x, b), torch.float64)


def test_large_size_precision(gen):
    # Band matrices are built in float64 with integer-reduced phases: large planes stay exact.
    x = torch.randn(1, 512, 384, generator=gen, dtype=torch.float64)
    assert_close_rel(et.lowfreq_crop(x, (300, 257)), ref_crop(x, (300, 257)), torch.float64)


@pytest.mark.parametrize("h,w,bh,bw", [(12, 12, 6, 6), (11, 10, 5, 7), (9, 14, 9, 4), (8, 8, 8, 8)])
def test_adjoint_identity(h, w, bh, bw, gen):
    x = torch.randn(3, h, w, generator=gen, dtype=torch.float64)
    y = torch.randn(3, bh, bw, generator=gen, dtype=torch.float64)
    lhs = (et.lowfreq_crop(x, (bh, bw)) * y).sum()
    rhs = (x * et.lowfreq_pad(y, (h, w))).sum()
    assert abs(lhs.item() - rhs.item()) <= 1e-12 * max(1.0, abs(lhs.item()))


@pytest.mark.parametrize("h,w,bh,bw", [(12, 12, 6, 6), (9, 10, 5, 7)])
def test_pad_matches_explicit_transpose(h, w, bh, bw):
    # Materialise crop as a matrix from the fft reference; pad must be its transpose.
    eye = torch.eye(h * w, dtype=torch.float64).view(h * w, h, w)
    a = ref_crop(eye, (bh, bw)).reshape(h * w, bh * bw)  # column j of A^T
    y = torch.randn(bh * bw, dtype=torch.float64)
    expected = (a @ y).view(h, w)
    assert_close_rel(et.lowfreq_pad(y.view(bh, bw), (h, w)), expected, torch.float64)


def test_mean_preserved_and_identity_at_full_size(gen):
    x = torch.randn(4, 3, 30, 26, generator=gen, dtype=torch.float64) + 2.0
    for size in [(1, 1), (7, 8), (16, 13), (30, 26)]:
        y = et.lowfreq_crop(x, size)
        torch.testing.assert_close(y.mean(dim=(-2, -1)), x.mean(dim=(-2, -1)), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(et.lowfreq_crop(x, (30, 26)), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(et.lowfreq_pad(x, (30, 26)), x, rtol=0, atol=1e-12)


def test_linearity(gen):
    a, b = torch.randn(2, 3, 20, 20, generator=gen, dtype=torch.float64).unbind(0)
    lhs = et.lowfreq_crop(2.5 * a - 0.75 * b, 12)
    rhs = 2.5 * et.lowfreq_crop(a, 12) - 0.75 * et.lowfreq_crop(b, 12)
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("h,w,bh,bw", [(16, 16, 8, 8), (15, 12, 7, 6)])
def test_proposition1_high_frequencies_do_not_matter(h, w, bh, bw, gen):
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
    torch.testing.assert_close(et.lowfreq_crop(x2, (bh, bw)), et.lowfreq_crop(x, (bh, bw)), rtol=0, atol=1e-12)
    if bh % 2 == 1 and bw % 2 == 1:
        # Odd bands are symmetric: the crop's spectrum is exactly the kept spectrum, scaled.
        y_spec = torch.fft.fft2(et.lowfreq_crop(x, (bh, bw)))
        kept = spec[..., band_indices(h, bh), :][..., band_indices(w, bw)]
        torch.testing.assert_close(y_spec * (h * w) / (bh * bw), kept, rtol=0, atol=1e-9)


@pytest.mark.parametrize("h,w,bh,bw", [(16, 16, 8, 8), (15, 12, 7, 6), (9, 8, 5, 6), (10, 10, 3, 3)])
def test_lowpass_is_spectral_upsampling_of_crop(h, w, bh, bw, gen):
    x = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
    out = et.lowpass(x, (bh, bw))
    assert out.shape == x.shape
    assert_close_rel(out, ref_lowpass(x, (bh, bw)), torch.float64)
    if bh % 2 and bw % 2:
        mask = torch.zeros(h, w, dtype=torch.bool)
        mask[torch.tensor(band_indices(h, bh))[:, None], torch.tensor(band_indices(w, bw))[None, :]] = True
        ideal = torch.fft.ifft2(torch.fft.fft2(x) * mask).real
        assert_close_rel(out, ideal, torch.float64)


def test_gradcheck_and_gradgradcheck(gen):
    x = torch.randn(2, 7, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: et.lowfreq_crop(t, (4, 3)), (x,))
    assert torch.autograd.gradgradcheck(lambda t: et.lowfreq_crop(t, (4, 4)), (x,))
    assert torch.autograd.gradcheck(lambda t: et.lowfreq_pad(t, (8, 6)), (y,))
    assert torch.autograd.gradgradcheck(lambda t: et.lowfreq_pad(t, (9, 8)), (y,))
    assert torch.autograd.gradcheck(lambda t: et.lowpass(t, (4, 4)), (x,))


def test_empty_batch():
    x = torch.empty(0, 3, 16, 16)
    assert et.lowfreq_crop(x, 8).shape == (0, 3, 8, 8)
    assert et.lowfreq_pad(torch.empty(0, 8, 8), 16).shape == (0, 16, 16)


def test_nan_inf_propagate():
    x = torch.randn(2, 16, 16)
    x[0, 3, 4] = float("nan")
    x[1, 0, 0] = float("inf")
    y = et.lowfreq_crop(x, 8)
    assert torch.isnan(y[0]).all()  # every output sample mixes every input sample
    assert not torch.isfinite(y[1]).all()
    assert torch.isfinite(et.lowfreq_crop(torch.randn(2, 16, 16), 8)).all()


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: et.lowfreq_crop(torch.randn(16), 8), ValueError, "at least 2 dims"),
        (lambda: et.lowfreq_crop(torch.randn(2, 16, 16), 0), ValueError, ">= 1"),
        (lambda: et.lowfreq_crop(torch.randn(2, 16, 16), (8, -1)), ValueError, ">= 1"),
        (lambda: et.lowfreq_crop(torch.randn(2, 16, 16), 17), ValueError, "must not exceed"),
        (lambda: et.lowfreq_crop(torch.randn(2, 16, 12), (8, 13)), ValueError, "must not exceed"),
        (lambda: et.lowfreq_crop(torch.zeros(2, 16, 16, dtype=torch.int64), 8), ValueError, "real floating dtype"),
        (lambda: et.lowfreq_crop(torch.zeros(2, 16, 16, dtype=torch.uint8), 8), ValueError, "real floating dtype"),
        (lambda: et.lowfreq_crop(torch.zeros(2, 16, 16, dtype=torch.bool), 8), ValueError, "real floating dtype"),
        (lambda: et.lowfreq_crop(torch.zeros(2, 16, 16, dtype=torch.complex64), 8), ValueError, "real floating dtype"),
        (lambda: et.lowfreq_crop(torch.randn(2, 16, 16), (8, 8, 8)), TypeError, "pair of ints"),
        (lambda: et.lowfreq_crop(torch.randn(2, 16, 16), 8.0), TypeError, "pair of ints"),
        (lambda: et.lowfreq_crop([[1.0]], 1), TypeError, "torch.Tensor"),
        (lambda: et.lowfreq_pad(torch.randn(2, 16, 16), 8), ValueError, "at least the input"),
        (lambda: et.lowpass(torch.randn(2, 16, 16), 20), ValueError, "must not exceed"),
    ],
)
def test_bad_input_python_api(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize(
    "args,match",
    [
        ((torch.randn(16), [8, 8]), "at least 2 dims"),
        ((torch.randn(2, 16, 16), [0, 8]), ">= 1"),
        ((torch.randn(2, 16, 16), [8, 17]), "must not exceed"),
        ((torch.zeros(2, 16, 16, dtype=torch.int32), [8, 8]), "real floating dtype"),
        ((torch.zeros(2, 16, 16, dtype=torch.complex128), [8, 8]), "real floating dtype"),
        ((torch.randn(2, 16, 16), [8]), "2"),
    ],
)
def test_bad_input_raw_op(args, match):
    # Direct torch.ops calls bypass the Python checks: the C++ kernel must raise, never crash.
    with pytest.raises((RuntimeError, ValueError), match=match):
        torch.ops.etrain.lowfreq_crop(*args)


def test_raw_pad_rejects_smaller_target():
    with pytest.raises(ValueError, match="at least the input"):
        torch.ops.etrain.lowfreq_pad(torch.randn(2, 16, 16), [8, 16])
