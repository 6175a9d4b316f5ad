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
