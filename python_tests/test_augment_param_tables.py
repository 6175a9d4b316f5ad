"""The table-driven parameter generation (RandAugment.chain_args through _OpTable, the vectorised rotate_matrix)
equals the frozen per-op / per-sample implementation it replaced (_augment_policy_reference.py) bit for bit, over
policies, transform sets, magnitudes, image sizes, batch sizes and seeds. Compared as raw bits (int64 views), so
that even the sign of a zero must agree."""

from __future__ import annotations

import math

import pytest
import torch

import _augment_policy_reference as ref
from efficienttrain_ext.augment import RandAugment
from efficienttrain_ext.augment import functional as AF
from efficienttrain_ext.augment import policy as P

POLICIES = ["rand-m9-mstd0.5", "rand-m9-inc1", "rand-m9-mstd0.5-inc1", "rand-m9-mstd0.5-tweights",
            "rand-m9-mstd0.5-t3aw", "rand-m9-t3a-n3", "rand-m9-mstd101-inc1", "rand-m7-n4-p1.0-mstd2-mmax9"]
# Every op this module knows, with GaussianBlurRand and the non-Rel translations (only reachable through a list).
ALL_OPS = list(P.KNOWN_OPS)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int64) if t.dtype == torch.float64 else t


def _assert_same(ra: RandAugment, draws, h: int, w: int) -> None:
    got = ra.chain_args(draws, h, w)
    want = ref.chain_args(ra, draws, h, w)
    for g, r, what in zip(got, want, ("op", "params", "interp")):
        assert g.dtype == r.dtype and g.shape == r.shape, what
        assert torch.equal(_bits(g), _bits(r)), (what, ra.policy, ra.magnitude, h, w)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("n", [1, 7, 256])
def test_chain_args_equal_the_reference(policy, n):
    ra = RandAugment(policy, {"translate_const": 100})
    for magnitude in range(11):
        ra.magnitude = magnitude
        for seed in range(3):
            draws = ra.draw(n, torch.Generator().manual_seed(1000 * magnitude + seed))
            _assert_same(ra, draws, 224, 224)
    ra.magnitude = 9.5
    draws = ra.draw(n, torch.Generator().manual_seed(7))
    _assert_same(ra, draws, 37, 53)  # odd, non-square: TranslateXRel/YRel and Rotate's centre differ


def test_every_op_and_edge_levels_equal_the_reference():
    # Uniform ops over the whole list, every slot applied, magnitudes that hit the clamps and trunc boundaries
    # (0, 2.5, 10: Posterize/Solarize steps; fractional levels), both signs, and -0.0 levels.
    ra = RandAugment("rand-m9-n3-p1.0-mstd0", {"translate_const": 100, "translate_pct": 0.4},
                     transforms=ALL_OPS)
    g = torch.Generator().manual_seed(3)
    n = 4000
    draws = ra.draw(n, g)
    levels = torch.tensor([0.0, -0.0, 2.5, 5.0, 9.99, 10.0, 0.7, 1e-12], dtype=torch.float64)
    mags = torch.cat([levels, torch.rand(n * 3 - len(levels), generator=g, dtype=torch.float64) * 10])
    draws["magnitude"] = mags.reshape(n, 3)
    _assert_same(ra, draws, 40, 48)
    draws["applied"] = torch.rand(n, 3, generator=g) < 0.5
    _assert_same(ra, draws, 31, 17)


def test_weighted_dict_and_duplicate_ops_equal_the_reference():
    ra = RandAugment("rand-m9-mstd0.5", transforms={"Rotate": 2, "Desaturate": 1, "GaussianBlurRand": 1,
                                                    "TranslateY": 1, "PosterizeOriginal": 1})
    for seed in range(5):
        _assert_same(ra, ra.draw(64, torch.Generator().manual_seed(seed)), 64, 96)
    dup = RandAugment("rand-m9-mstd1", transforms=["Rotate", "Rotate", "SolarizeIncreasing", "Solarize"])
    _assert_same(dup, dup.draw(300, torch.Generator().manual_seed(0)), 224, 224)


def test_empty_batches_and_zero_layers():
    # The reference indexes an empty bincount here (RandAugment.__call__ never called it with no slots); the tables
    # give empty arguments of the right shapes.
    for n, policy in ((0, "rand-m9-mstd0.5-inc1"), (0, "rand-m9-n0"), (5, "rand-m9-n0")):
        ra = RandAugment(policy)
        op, params, interp = ra.chain_args(ra.draw(n, torch.Generator().manual_seed(0)), 8, 8)
        assert op.shape == interp.shape == (n, ra.num_layers) and params.shape == (n, ra.num_layers, 6)


def test_missing_blur_uniforms_raise_like_the_reference():
    ra = RandAugment("rand-m9-p1.0", transforms=["GaussianBlurRand"])
    draws = ra.draw(4, torch.Generator().manual_seed(0))
    del draws["blur_u"]
    with pytest.raises(ValueError, match="blur_u"):
        ref.chain_args(ra, draws, 8, 8)
    with pytest.raises(ValueError, match="blur_u"):
        ra.chain_args(draws, 8, 8)
    draws["applied"][:] = False  # nobody blurs: neither needs the uniforms
    _assert_same(ra, draws, 8, 8)


@pytest.mark.parametrize("w,h", [(224, 224), (48, 40), (1, 1), (23, 17)])
def test_rotate_matrix_equals_the_reference(w, h):
    g = torch.Generator().manual_seed(0)
    special = torch.tensor([0.0, -0.0, 360.0, -360.0, 720.0, 30.0, -30.0, 1e-300, -1e-300, 359.99999999999994,
                            -359.99999999999994, 270.0, -90.0, 180.0], dtype=torch.float64)
    degrees = torch.cat([special, torch.rand(20000, generator=g, dtype=torch.float64) * 720 - 360,
                         torch.arange(-30, 31, dtype=torch.float64) * 0.9 * 30 / 27])
    got, want = AF.rotate_matrix(degrees, w, h), ref.rotate_matrix(degrees, w, h)
    assert torch.equal(_bits(got), _bits(want))
    assert AF.rotate_matrix(torch.zeros(0), w, h).shape == (0, 6)


def test_rotate_matrix_is_pillows():
    # Independent of the reference: Pillow's own Image.rotate matrix (PIL/Image.py) for a few angles.
    for deg in (13.0, -27.5, 90.0, 0.0):
        ang = -math.radians(deg % 360.0)
        m = [round(math.cos(ang), 15), round(math.sin(ang), 15), 0.0, round(-math.sin(ang), 15),
             round(math.cos(ang), 15), 0.0]
        cx, cy = 24 / 2.0, 20 / 2.0
        m[2], m[5] = m[0] * -cx + m[1] * -cy + 0.0 + cx, m[3] * -cx + m[4] * -cy + 0.0 + cy
        assert AF.rotate_matrix(torch.tensor([deg]), 24, 20)[0].tolist() == m
