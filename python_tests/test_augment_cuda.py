"""CUDA augment kernels against the CPU kernels (bit-exact) and the policy on CUDA (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

import efficienttrain_ext as et
import efficienttrain_ext.augment.functional as AF
from conftest import requires_cuda
from efficienttrain_ext.augment import RandAugment

pytestmark = requires_cuda


def _batch(n=16, c=3, h=37, w=53, seed=0):
    # smooth-ish random images (low-res noise upsampled), so that histograms and blends are not degenerate
    g = torch.Generator().manual_seed(seed)
    small = torch.randint(0, 256, (n, c, h // 4 + 1, w // 4 + 1), generator=g).float()
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear").round().clamp(0, 255).to(torch.uint8)


@pytest.fixture(autouse=True)
def _needs_cuda_kernels():
    if not et.built_with_cuda():
        pytest.skip("library built without CUDA kernels")


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("code", sorted(AF.OP_CODES.values()))
def test_each_op_cuda_equals_cpu(code, c):
    x = _batch(c=c)
    n = x.shape[0]
    g = torch.Generator().manual_seed(code)
    params = torch.zeros(n, 6, dtype=torch.float64)
    if code == AF.OP_CODES["affine"]:
        deg = torch.rand(n, generator=g, dtype=torch.float64) * 60 - 30
        params = AF.rotate_matrix(deg, x.shape[3], x.shape[2])
        params[::3, 1] += 0.2  # add some shear
    else:
        params[:, 0] = torch.rand(n, generator=g, dtype=torch.float64) * 2
        if code in (AF.OP_CODES["posterize"],):
            params[:, 0] = torch.randint(1, 9, (n,), generator=g)
        if code in (AF.OP_CODES["solarize"], AF.OP_CODES["solarize_add"]):
            params[:, 0] = torch.randint(0, 257, (n,), generator=g)
            params[:, 1] = 128
        if code == AF.OP_CODES["gaussian_blur"]:
            params[:, 0] = torch.rand(n, generator=g, dtype=torch.float64) * 4  # timm: [0.1, 2]
            params[:3, 0] = torch.tensor([0.0, 1e-30, 0.1], dtype=torch.float64)  # copies and the smallest blur
    op = torch.full((n,), code, dtype=torch.int64)
    interp = torch.arange(n) % 3
    fill = torch.randint(0, 256, (n, c), generator=g, dtype=torch.uint8)
    cpu = AF.apply_slot(x, op, params, interp, fill)
    gpu = AF.apply_slot(x.cuda(), op, params, interp, fill)
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=0)


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (3, 2), (5, 7), (1, 9), (9, 1), (224, 160)], ids=str)
def test_gaussian_blur_cuda_equals_cpu_all_sizes(hw, c):
    # images smaller than the box (Pillow's edgeA > edgeB branch) up to a training size; radii from 0 to 1000,
    # samples of other ops in the same slot (the pixel pass must leave the blurred samples to the blur passes)
    x = _batch(n=12, c=c, h=hw[0], w=hw[1], seed=5)
    radii = torch.tensor([0.0, 0.1, 0.5, 1.0, 2.0, 3.7, 12.0, 1000.0, 1.5, 0.7, 2.0, 0.25], dtype=torch.float64)
    params = torch.zeros(12, 6, dtype=torch.float64)
    params[:, 0] = radii
    op = torch.full((12,), AF.OP_CODES["gaussian_blur"], dtype=torch.int64)
    op[-4:] = torch.tensor([AF.OP_CODES["invert"], AF.OP_CODES["identity"], AF.OP_CODES["brightness"],
                            AF.OP_CODES["sharpness"]])
    interp = torch.full((12,), 2, dtype=torch.int64)
    fill = torch.zeros(12, c, dtype=torch.uint8)
    cpu = AF.apply_slot(x, op, params, interp, fill)
    gpu = AF.apply_slot(x.cuda(), op, params, interp, fill)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=0)
    torch.testing.assert_close(AF.gaussian_blur(x.cuda(), radii).cpu(), AF.gaussian_blur(x, radii), rtol=0, atol=0)


def test_mixed_slot_and_policy_cuda_equals_cpu():
    x = _batch(n=64, h=64, w=48)
    for policy in ("rand-m9-mstd0.5-inc1", "rand-m7-n3-p0.9-mstd1", "rand-m10-n2-p1.0", "rand-m9-mstd0.5-t3a",
                   "rand-m9-mstd0.5-t3aw"):
        ra = RandAugment(policy)
        cpu = ra(x, generator=torch.Generator().manual_seed(3))
        gpu = ra(x.cuda(), generator=torch.Generator().manual_seed(3))
        assert gpu.is_cuda and gpu.dtype == torch.uint8
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=0)


def test_empty_and_bad_cuda_input():
    x = torch.zeros(0, 3, 8, 8, dtype=torch.uint8, device="cuda")
    assert AF.invert(x).shape == x.shape
    with pytest.raises(ValueError, match="uint8"):
        AF.invert(torch.zeros(2, 3, 8, 8, device="cuda"))


def test_chain_cuda_equals_cpu_large_batch():
    # more samples than one grid row of blocks per sample would suggest, odd size, mixed ops per sample and slot
    x = _batch(n=300, h=29, w=45, seed=2)
    n, L = x.shape[0], 2
    g = torch.Generator().manual_seed(9)
    op = torch.randint(0, len(AF.OP_CODES), (n, L), generator=g)
    params = torch.zeros(n, L, 6, dtype=torch.float64)
    params[..., 0] = torch.randint(1, 9, (n, L), generator=g).double()
    aff = op == AF.OP_CODES["affine"]
    params[aff] = AF.rotate_matrix(torch.rand(int(aff.sum()), generator=g, dtype=torch.float64) * 60 - 30,
                                   x.shape[3], x.shape[2])
    interp = torch.randint(0, 3, (n, L), generator=g)
    fill = torch.randint(0, 256, (n, 3), generator=g, dtype=torch.uint8)
    cpu = AF.apply_chain(x, op, params, interp, fill)
    gpu = AF.apply_chain(x.cuda(), op, params, interp, fill)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=0)


def _affine_params(n, h, w, g):
    # identity, translations (the no-rotation nearest path, dx/dy == 0 shortcuts), shears, rotations, out of frame
    eye = torch.tensor([1.0, 0, 0, 0, 1.0, 0], dtype=torch.float64)
    p = eye.repeat(n, 1)
    k = torch.arange(n) % 8
    t = torch.rand(n, generator=g, dtype=torch.float64) - 0.5
    p[k == 1, 2] = (t * w * 0.9)[k == 1]           # translate x (fractional)
    p[k == 2, 5] = (t * h * 0.9)[k == 2]           # translate y
    p[k == 3, 1] = (t * 0.6)[k == 3]               # shear x
    p[k == 4, 3] = (t * 0.6)[k == 4]               # shear y
    p[k == 5, 2] = torch.round(t * w)[k == 5]      # integer translate x
    rot = AF.rotate_matrix(t * 60, w, h)
    p[k == 6] = rot[k == 6]
    p[k == 7, 2] = 3.0 * w                         # everything outside: fill
    return p


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("interp_code", [0, 1, 2])
def test_affine_variants_cuda_equals_cpu(interp_code, c):
    x = _batch(n=32, c=c, h=31, w=44, seed=7)
    g = torch.Generator().manual_seed(11 + interp_code)
    params = _affine_params(32, 31, 44, g)
    op = torch.full((32,), AF.OP_CODES["affine"], dtype=torch.int64)
    interp = torch.full((32,), interp_code, dtype=torch.int64)
    fill = torch.randint(0, 256, (32, c), generator=g, dtype=torch.uint8)
    cpu = AF.apply_slot(x, op, params, interp, fill)
    gpu = AF.apply_slot(x.cuda(), op, params, interp, fill)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=0)


@pytest.mark.parametrize("c", [1, 3])
def test_histogram_ops_large_cuda_equals_cpu(c):
    # 224 x 224: more pixels than the histogram blocks of one sample cover in one stride (the grid-stride loop),
    # Contrast's luma histogram, AutoContrast's and Equalize's channel histograms, mixed in one slot
    x = _batch(n=12, c=c, h=224, w=224, seed=4)
    x[0] = 7  # a flat image (degenerate histograms)
    ops = [AF.OP_CODES[k] for k in ("contrast", "auto_contrast", "equalize", "identity")]
    op = torch.tensor([ops[i % 4] for i in range(12)], dtype=torch.int64)
    params = torch.zeros(12, 6, dtype=torch.float64)
    params[:, 0] = torch.linspace(0.1, 1.9, 12, dtype=torch.float64)
    interp = torch.zeros(12, dtype=torch.int64)
    fill = torch.zeros(12, c, dtype=torch.uint8)
    cpu = AF.apply_slot(x, op, params, interp, fill)
    gpu = AF.apply_slot(x.cuda(), op, params, interp, fill)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=0)


def test_noncontiguous_args_and_side_stream():
    # the op itself (not the Python front end) must accept strided CUDA arguments, and run on the current stream
    n, c = 8, 3
    x = _batch(n=n, c=c, h=20, w=30, seed=3)
    g = torch.Generator().manual_seed(5)
    op = torch.tensor([AF.OP_CODES[k] for k in ("invert", "affine", "color", "sharpness", "equalize",
                                                 "gaussian_blur", "posterize", "contrast")], dtype=torch.int64)
    params = torch.zeros(n, 6, dtype=torch.float64)
    params[:, 0] = 1.3
    params[1] = AF.rotate_matrix(torch.tensor([17.0], dtype=torch.float64), 30, 20)[0]
    params[6, 0] = 3
    interp = torch.tensor([2, 1, 0, 2, 1, 0, 2, 1], dtype=torch.int64)
    fill = torch.randint(0, 256, (n, c), generator=g, dtype=torch.uint8)
    ref = torch.ops.etrain.augment_slot(x, op, params, interp, fill)
    xs = x.cuda().to(memory_format=torch.channels_last)
    ops = torch.stack([op, op], 1).cuda()[:, 1]                        # stride 2
    ps = torch.cat([params, params], 1).cuda()[:, 6:]                  # row stride 12
    its = torch.stack([interp, interp], 1).cuda()[:, 0]
    fs = fill.t().contiguous().cuda().t()                              # transposed
    assert not (xs.is_contiguous() or ops.is_contiguous() or ps.is_contiguous() or fs.is_contiguous())
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())  # the channels_last copy above ran on the default stream
    with torch.cuda.stream(s):
        out = torch.ops.etrain.augment_slot(xs, ops, ps, its, fs)
        chain = torch.ops.etrain.augment_chain(xs, ops[:, None].expand(n, 2), ps[:, None].expand(n, 2, 6),
                                               its[:, None].expand(n, 2), fs)
    s.synchronize()
    torch.testing.assert_close(out.cpu(), ref, rtol=0, atol=0)
    ref2 = torch.ops.etrain.augment_slot(ref, op, params, interp, fill)
    torch.testing.assert_close(chain.cpu(), ref2, rtol=0, atol=0)


@pytest.mark.parametrize("c", [1, 3])
def test_chain_cuda_equals_cpu_c(c):
    x = _batch(n=40, c=c, h=17, w=23, seed=8)
    g = torch.Generator().manual_seed(c)
    op = torch.randint(0, len(AF.OP_CODES), (40, 3), generator=g)
    params = torch.zeros(40, 3, 6, dtype=torch.float64)
    params[..., 0] = torch.randint(1, 9, (40, 3), generator=g).double()
    aff = op == AF.OP_CODES["affine"]
    params[aff] = AF.rotate_matrix(torch.rand(int(aff.sum()), generator=g, dtype=torch.float64) * 60 - 30, 23, 17)
    interp = torch.randint(0, 3, (40, 3), generator=g)
    fill = torch.randint(0, 256, (40, c), generator=g, dtype=torch.uint8)
    torch.testing.assert_close(AF.apply_chain(x.cuda(), op, params, interp, fill).cpu(),
                               AF.apply_chain(x, op, params, interp, fill), rtol=0, atol=0)
    # zero slots, zero samples, tiny images
    assert torch.equal(AF.apply_chain(x.cuda(), op[:, :0], params[:, :0], interp[:, :0], fill).cpu(), x)
    e = torch.zeros(0, c, 5, 5, dtype=torch.uint8)
    assert AF.apply_chain(e.cuda(), op[:0], params[:0], interp[:0], fill[:0]).shape == e.shape
    t = x[:, :, :1, :2].contiguous()
    torch.testing.assert_close(AF.apply_chain(t.cuda(), op, params, interp, fill).cpu(),
                               AF.apply_chain(t, op, params, interp, fill), rtol=0, atol=0)


def test_cuda_front_end_checks_and_sample_limit():
    x = torch.zeros(2, 3, 4, 4, dtype=torch.uint8, device="cuda")
    op = torch.full((2,), AF.OP_CODES["affine"], dtype=torch.int64)
    params = torch.zeros(2, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="interp codes"):
        AF.apply_slot(x, op, params, torch.full((2,), 5, dtype=torch.int64))
    blur = torch.full((2,), AF.OP_CODES["gaussian_blur"], dtype=torch.int64)
    params[1, 0] = -1.0
    with pytest.raises(ValueError, match="GaussianBlur radius"):
        AF.apply_slot(x, blur, params)
    # op codes the kernels do not know act as the identity on CUDA (no device sync to check them)
    y = _batch(n=2, c=3, h=4, w=4).cuda()
    same = torch.ops.etrain.augment_slot(y, torch.full((2,), 99, dtype=torch.int64, device="cuda"),
                                         torch.zeros(2, 6, dtype=torch.float64, device="cuda"),
                                         torch.zeros(2, dtype=torch.int64, device="cuda"),
                                         torch.zeros(2, 3, dtype=torch.uint8, device="cuda"))
    assert torch.equal(same, y)
    n = 65536
    big = torch.zeros(n, 1, 1, 1, dtype=torch.uint8, device="cuda")
    with pytest.raises(ValueError, match="65535"):
        torch.ops.etrain.augment_slot(big, torch.zeros(n, dtype=torch.int64, device="cuda"),
                                      torch.zeros(n, 6, dtype=torch.float64, device="cuda"),
                                      torch.zeros(n, dtype=torch.int64, device="cuda"),
                                      torch.zeros(n, 1, dtype=torch.uint8, device="cuda"))
