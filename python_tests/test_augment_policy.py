"""efficienttrain_ext.augment.RandAugment against timm's RandAugment: policy strings, draw statistics, level
arguments, end-to-end equality given the same draws, reproducibility, the drop-in paths and bad input."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import auto_augment as ta

import efficienttrain_ext.augment.functional as AF
from efficienttrain_ext.augment import RandAugment, RandAugmentTransform, from_timm_string, parse_policy
from efficienttrain_ext.augment import policy as P

stats = pytest.importorskip("scipy.stats")
skdata = pytest.importorskip("skimage.data")

PHOTOS = [np.asarray(Image.fromarray(f()).resize((48, 40), Image.Resampling.BILINEAR))
          for f in (skdata.astronaut, skdata.chelsea, skdata.coffee)]


def _batch(n: int) -> torch.Tensor:
    imgs = [PHOTOS[i % 3] for i in range(n)]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()


# ---- policy strings ----

def test_transform_lists_match_timm():
    assert P.RAND_TRANSFORMS == ta._RAND_TRANSFORMS
    assert P.RAND_INCREASING_TRANSFORMS == ta._RAND_INCREASING_TRANSFORMS
    assert P.RAND_WEIGHTED_0 == ta._RAND_WEIGHTED_0
    assert P.RAND_3A == ta._RAND_3A
    assert P.RAND_WEIGHTED_3A == ta._RAND_WEIGHTED_3A
    assert set(P.KNOWN_OPS) == set(ta.NAME_TO_OP) == set(ta.LEVEL_TO_ARG)


@pytest.mark.parametrize("s", ["rand-m9-mstd0.5-inc1", "rand-m7-n3-p0.8-mstd1.0", "rand-m12-mmax15-mstd101",
                               "rand-m5-inc0-tweights", "rand", "rand-n1-p1.0", "rand-m9-mstd0.5-t3a",
                               "rand-m9-mstd0.5-t3aw", "rand-m7-inc1-t3a"])
def test_policy_settings_match_timm(s):
    ours = RandAugment(s)
    ref = ta.rand_augment_transform(s, {"translate_const": 100, "img_mean": (124, 116, 104)})
    assert ours.num_layers == ref.num_layers
    assert ours.ops == [op.name for op in ref.ops]
    op0 = ref.ops[0]
    assert ours.prob == op0.prob and ours.magnitude == op0.magnitude
    assert ours.magnitude_std == op0.magnitude_std
    assert ours.magnitude_max == (op0.magnitude_max or 10)
    if ref.choice_weights is not None:
        np.testing.assert_allclose(np.array(ours.weights) / sum(ours.weights), ref.choice_weights)
    else:
        assert ours.weights is None


@pytest.mark.parametrize("s,match", [
    ("rand-m9-x3", "unknown section key 'x'"),
    ("rand-m9-mstd", "no numeric value"),
    ("rand-mfoo", "no numeric value"),
    ("rand-m9-n2.5", "cannot parse"),
    ("augmix-m5", "must start with 'rand'"),
    ("rand-m9-tfoo", "unknown transform set"),
    ("rand-m9-t3b", "unknown transform set"),
    ("rand-p1.5", "p must be in"),
])
def test_bad_policy_strings_raise_value_error(s, match):
    with pytest.raises(ValueError, match=match):
        RandAugment(s)


def test_parse_policy_values():
    assert parse_policy("rand-m9-mstd0.5-t3aw")["transforms"] == "3aw"
    cfg = parse_policy("rand-m9-n3-p0.7-mstd200-mmax12-inc1-tweights")
    assert cfg == dict(magnitude=9.0, num_layers=3, prob=0.7, magnitude_std=math.inf, magnitude_max=12,
                       increasing=True, transforms="weights")


def test_bad_magnitudes_and_hparams_raise_value_error():
    ra = RandAugment()
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="magnitude"):
            ra.magnitude = bad
    with pytest.raises(ValueError, match="unknown keys"):
        RandAugment("rand-m9", {"translate_cnst": 3})
    with pytest.raises(ValueError, match="interpolation"):
        RandAugment("rand-m9", {"interpolation": "lanczos"})
    with pytest.raises(ValueError, match="progress"):
        RandAugment.magnitude_at(float("nan"))
    for bad in (torch.zeros(2, 3, 8, dtype=torch.uint8), torch.zeros(2, 2, 8, 8, dtype=torch.uint8),
                torch.zeros(2, 3, 8, 8)):
        with pytest.raises(ValueError):
            ra(bad)


def test_magnitude_schedule():
    ra = RandAugment("rand-m9-mstd0.5-inc1")
    assert RandAugment.magnitude_at(0.0) == 0.0 and RandAugment.magnitude_at(0.5) == 4.5
    assert RandAugment.magnitude_at(1.0) == 9.0 and RandAugment.magnitude_at(2.0) == 9.0
    assert RandAugment.magnitude_at(0.5, m0=10) == 5.0
    ra.magnitude = ra.magnitude_at(1 / 3)
    assert ra.magnitude == pytest.approx(3.0)
    d = ra.draw(4000, torch.Generator().manual_seed(0))
    assert d["magnitude"].mean().item() == pytest.approx(3.0, abs=0.03)


# ---- draw statistics vs timm ----

def _timm_draws(policy: str, n_images: int, magnitude: float | None = None, seed: int = 0):
    """Run timm's RandAugment on a 1x1 image with recording ops: (names applied, magnitudes, number of slots)."""
    t = ta.rand_augment_transform(policy, {"translate_const": 100})
    applied, mags = [], []
    for op in t.ops:
        if magnitude is not None:
            op.magnitude = magnitude
        name = op.name

        def rec_fn(img, *args, _name=name, **kw):
            applied.append(_name)
            return img

        orig_level = op.level_fn

        def rec_level(level, hp, _orig=orig_level):
            mags.append(level)
            return _orig(level, hp) if _orig is not None else ()

        op.aug_fn = rec_fn
        op.level_fn = rec_level
    random.seed(seed)
    np.random.seed(seed)
    img = Image.new("RGB", (1, 1))
    for _ in range(n_images):
        t(img)
    return applied, np.array(mags), n_images * t.num_layers


@pytest.mark.parametrize("policy,m", [("rand-m9-mstd0.5-inc1", None), ("rand-m9.8-mstd0.5", None),
                                      ("rand-m6-n3-p0.8-mstd101", None), ("rand-m3-mstd2-mmax5-inc1", None),
                                      ("rand-m9-mstd0.5-t3a", None), ("rand-m9-mstd0.5-t3aw", None)])
def test_draw_statistics_match_timm(policy, m):
    # timm parses m with int(); use the same integer magnitude for both
    timm_policy = policy.replace("m9.8", "m10") if "m9.8" in policy else policy
    n = 6000
    t_applied, t_mags, t_slots = _timm_draws(timm_policy, n, magnitude=9.8 if "m9.8" in policy else None)
    ra = RandAugment(policy)
    d = ra.draw(n, torch.Generator().manual_seed(1))
    slots = d["op"].numel()
    assert slots == t_slots
    ours_applied = d["applied"]
    # per-op probability p: binomial sampling error, and ours vs timm within 5 sigma
    p = ra.prob
    sd = math.sqrt(p * (1 - p) / slots) if p < 1 else 0.0
    assert abs(ours_applied.float().mean().item() - p) <= 5 * sd + 1e-12
    assert abs(len(t_applied) / t_slots - p) <= 5 * sd + 1e-12
    # op frequencies among applied ops: chi-square of ours vs timm (2 x K contingency table)
    k = len(ra.ops)
    ours_counts = torch.bincount(d["op"][ours_applied], minlength=k).numpy()
    timm_counts = np.array([t_applied.count(name) for name in ra.ops])
    chi2, pval, _, _ = stats.chi2_contingency(np.stack([ours_counts, timm_counts]))
    assert pval > 1e-4, (ours_counts, timm_counts)
    # magnitude distribution (incl. the clipping to [0, mmax]): two-sample KS, and the clipped fractions
    ours_m = d["magnitude"][ours_applied].numpy()
    ks = stats.ks_2samp(ours_m, t_mags)
    assert ks.pvalue > 1e-4, (ours_m.mean(), t_mags.mean())
    top = ra.magnitude_max
    for frac_ours, frac_timm in [((ours_m == top).mean(), (t_mags == top).mean()),
                                 ((ours_m == 0).mean(), (t_mags == 0).mean())]:
        se = math.sqrt(max(frac_timm * (1 - frac_timm), 1e-4) * (1 / len(ours_m) + 1 / len(t_mags)))
        assert abs(frac_ours - frac_timm) <= 5 * se
    assert ours_m.min() >= 0 and ours_m.max() <= top


def test_weighted_choice_without_replacement():
    ra = RandAugment("rand-m9-n3-tweights")
    d = ra.draw(3000, torch.Generator().manual_seed(0))
    ops = d["op"]
    assert all(len(set(row.tolist())) == 3 for row in ops[:500])
    # first-slot frequencies ~ the normalised weights (timm: np.random.choice with p, no replacement)
    w = np.array(ra.weights) / sum(ra.weights)
    freq = torch.bincount(ops[:, 0], minlength=len(w)).numpy() / len(ops)
    np.testing.assert_allclose(freq, w, atol=0.03)


def test_negation_and_interpolation_are_fair_coins():
    d = RandAugment("rand-m9").draw(20000, torch.Generator().manual_seed(3))
    assert abs(d["negate"].float().mean().item() - 0.5) < 0.015
    interp = d["interp"]
    assert set(interp.unique().tolist()) == {1, 2}  # bilinear / bicubic, as timm's _RANDOM_INTERPOLATION
    assert abs((interp == 1).float().mean().item() - 0.5) < 0.015
    fixed = RandAugment("rand-m9", {"interpolation": Image.Resampling.BILINEAR}).draw(100)["interp"]
    assert set(fixed.unique().tolist()) == {1}


# ---- level arguments: identical to timm's level_to_arg for the same magnitude and sign ----

@pytest.mark.parametrize("name", P.KNOWN_OPS)
@pytest.mark.parametrize("negate", [False, True])
def test_level_arguments_match_timm(name, negate, monkeypatch):
    monkeypatch.setattr(ta, "_randomly_negate", (lambda v: -v) if negate else (lambda v: v))
    hp = {"translate_const": 100, "translate_pct": 0.4}
    levels = [0.0, 0.7, 2.4, 2.5, 5.0, 9.0, 9.99, 10.0]
    lvl = torch.tensor(levels, dtype=torch.float64) / 10
    sign = torch.full((len(levels),), -1.0 if negate else 1.0, dtype=torch.float64)
    u = torch.tensor([random.Random(i).random() for i in range(len(levels))], dtype=torch.float64)
    code, params = P._op_args(name, lvl, sign, 40, 48, 0.4, 100.0, u)
    for i, level in enumerate(levels):
        fn = ta.LEVEL_TO_ARG[name]
        args = fn(level, hp) if fn is not None else ()
        p = params[i]
        if name == "GaussianBlur":
            assert code == AF.OP_CODES["gaussian_blur"] and p[0].item() == args[0]
        elif name == "GaussianBlurRand":
            # timm's gaussian_blur_rand: random.uniform(0.1, 2.0 * factor) with factor = level_to_arg's value
            assert code == AF.OP_CODES["gaussian_blur"]
            assert p[0].item() == random.Random(i).uniform(0.1, 2.0 * args[0]), (level, args)
        elif name in ("AutoContrast", "Equalize", "Invert"):
            assert args == ()
        elif name == "Rotate":
            assert torch.equal(p, AF.rotate_matrix(torch.tensor([args[0]], dtype=torch.float64), 48, 40)[0])
        elif name == "ShearX":
            assert p[1].item() == args[0]
        elif name == "ShearY":
            assert p[3].item() == args[0]
        elif name == "TranslateXRel":
            assert p[2].item() == args[0] * 48
        elif name == "TranslateYRel":
            assert p[5].item() == args[0] * 40
        elif name in ("TranslateX", "TranslateY"):
            assert p[2 if name == "TranslateX" else 5].item() == args[0]
        elif name.startswith("Posterize"):
            assert p[0].item() == max(1, args[0])
        elif name == "SolarizeAdd":
            assert (p[0].item(), p[1].item()) == (args[0], 128)
        elif name.startswith("Solarize"):
            assert p[0].item() == args[0]
        elif name == "Desaturate":
            assert p[0].item() == min(1.0, max(0.0, 1.0 - args[0]))
        else:
            assert p[0].item() == args[0], (name, level)


# ---- end to end: the batched policy equals timm's op functions applied with the same draws ----

def _check_policy_equals_timm_ops(ra: RandAugment, x: torch.Tensor, seed: int, monkeypatch, gray: bool = False):
    """ra(x) equals timm's op functions applied image by image with ra's draws (level_to_arg and the op function
    from timm, the sign and GaussianBlurRand's uniform from the draws)."""
    n = x.shape[0]
    got = ra(x, generator=torch.Generator().manual_seed(seed))
    d = ra.draw(n, torch.Generator().manual_seed(seed))
    pil = {1: Image.Resampling.BILINEAR, 2: Image.Resampling.BICUBIC}
    fill = (124, 116, 104)[:1] if gray else (124, 116, 104)
    seen = set()
    for i in range(n):
        arr = x[i].permute(1, 2, 0).numpy()
        img = Image.fromarray(arr[..., 0] if gray else arr)
        for s in range(ra.num_layers):
            if not d["applied"][i, s]:
                continue
            name = ra.ops[d["op"][i, s]]
            seen.add(name)
            neg = bool(d["negate"][i, s])
            monkeypatch.setattr(ta, "_randomly_negate", lambda v, neg=neg: -v if neg else v)
            if "blur_u" in d:
                r = random.Random(0)
                monkeypatch.setattr(r, "random", lambda u=float(d["blur_u"][i, s]): u)
                monkeypatch.setattr(random, "uniform", r.uniform)
            args = ta.LEVEL_TO_ARG[name](d["magnitude"][i, s].item(), ra.hparams) if ta.LEVEL_TO_ARG[name] else ()
            if name.startswith("Posterize"):
                args = (max(1, args[0]),)
            img = ta.NAME_TO_OP[name](img, *args, fillcolor=fill, resample=pil[int(d["interp"][i, s])])
        out = got[i].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(out[..., 0] if gray else out, np.asarray(img), err_msg=f"image {i}")
    return seen


def test_policy_output_equals_timm_ops_given_the_same_draws(monkeypatch):
    ra = RandAugment("rand-m9-n3-p0.7-mstd1-inc1", {"img_mean": (124, 116, 104), "translate_pct": 0.3})
    _check_policy_equals_timm_ops(ra, _batch(30), 11, monkeypatch)


@pytest.mark.parametrize("policy", ["rand-m9-mstd0.5-t3a", "rand-m9-mstd0.5-t3aw", "rand-m10-n3-p1.0-mstd101-t3a"])
@pytest.mark.parametrize("gray", [False, True], ids=["rgb", "gray"])
def test_3augment_policies_equal_timm_ops_given_the_same_draws(policy, gray, monkeypatch):
    # timm's 3-Augment sets (SolarizeIncreasing, Desaturate, GaussianBlur; t3aw: weighted, 14 ops)
    ra = RandAugment(policy, {"img_mean": (124, 116, 104)})
    x = _batch(40)
    if gray:
        x = torch.from_numpy(np.stack([np.asarray(Image.fromarray(p).convert("L")) for p in PHOTOS] * 14)[:40, None])
    seen = _check_policy_equals_timm_ops(ra, x, 5, monkeypatch, gray=gray)
    assert "GaussianBlur" in seen


def test_transforms_argument_with_gaussian_blur_rand_equals_timm(monkeypatch):
    # an explicit op list (timm's rand_augment_transform(..., transforms=[...])), GaussianBlurRand included
    ops = ["GaussianBlurRand", "GaussianBlur", "Rotate", "Desaturate"]
    ra = RandAugment("rand-m8-n2-p0.9-mstd1", {"img_mean": (124, 116, 104)}, transforms=ops)
    ref = ta.rand_augment_transform("rand-m8-n2-p0.9-mstd1", {"img_mean": (124, 116, 104)}, transforms=ops)
    assert ra.ops == [op.name for op in ref.ops] and ra.weights is None
    seen = _check_policy_equals_timm_ops(ra, _batch(40), 2, monkeypatch)
    assert "GaussianBlurRand" in seen
    weighted = RandAugment("rand-m8", transforms={"GaussianBlurRand": 2, "Invert": 1, "Equalize": 1})
    assert weighted.ops == ["GaussianBlurRand", "Invert", "Equalize"] and weighted.weights == [2.0, 1.0, 1.0]
    d = weighted.draw(500, torch.Generator().manual_seed(0))
    assert d["blur_u"].shape == (500, 2) and 0 <= d["blur_u"].min() and d["blur_u"].max() < 1
    # the other draws do not depend on whether GaussianBlurRand is in the list
    assert "blur_u" not in RandAugment("rand-m9-t3aw").draw(3)
    for bad, match in [(["Rotate", "Cutout"], "unknown ops"), ({"Rotate": -1.0}, "weights"), ([], "empty"),
                       ("3b", "unknown transform set")]:
        with pytest.raises(ValueError, match=match):
            RandAugment("rand-m9", transforms=bad)


def test_m0_still_applies_magnitude_free_ops():
    ra = RandAugment("rand-m0-n1-p1.0")
    x = _batch(60)
    d = ra.draw(60, torch.Generator().manual_seed(5))
    y = ra(x, generator=torch.Generator().manual_seed(5))
    assert (d["magnitude"] == 0).all()
    free = {"AutoContrast", "Equalize", "Invert"}
    for i in range(60):
        name = ra.ops[d["op"][i, 0]]
        if name in free:
            assert not torch.equal(y[i], x[i]), name
    assert any(ra.ops[j] in free for j in d["op"][:, 0].tolist())


def test_reproducible_with_generator_and_magnitude_setter():
    x = _batch(12)
    ra = RandAugment("rand-m9-mstd0.5-inc1")
    a = ra(x, generator=torch.Generator().manual_seed(0))
    b = ra(x, generator=torch.Generator().manual_seed(0))
    c = ra(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    ra2 = RandAugment("rand-m9-mstd0.5-inc1", generator=torch.Generator().manual_seed(0))
    assert torch.equal(ra2(x), a)
    ra.magnitude = 0.0
    z = ra(x, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(z, a)


def test_from_timm_string_matches_timm_create_transform():
    from timm.data import create_transform

    tf = create_transform(160, is_training=True, auto_augment="rand-m9-mstd0.5-inc1", interpolation="bicubic")
    ref = next(t for t in tf.transforms if isinstance(t, ta.RandAugment))
    ours = from_timm_string("rand-m9-mstd0.5-inc1", 160, interpolation="bicubic")
    op0 = ref.ops[0]
    assert ours.fill == tuple(op0.kwargs["fillcolor"])
    assert ours.translate_const == op0.hparams["translate_const"]
    assert ours.interp_choices == [AF._PIL_TO_INTERP[int(op0.kwargs["resample"])]]
    assert ours.ops == [op.name for op in ref.ops]
    with pytest.raises(ValueError, match="rand"):
        from_timm_string("augmix-m5", 160)


def test_per_image_transform_types():
    tf = RandAugmentTransform("rand-m9-n2-p1.0", generator=torch.Generator().manual_seed(0))
    img = Image.fromarray(PHOTOS[0])
    out = tf(img)
    assert isinstance(out, Image.Image) and out.size == img.size and out.mode == "RGB"
    arr = tf(PHOTOS[1])
    assert isinstance(arr, np.ndarray) and arr.shape == PHOTOS[1].shape and arr.dtype == np.uint8
    gray = tf(np.asarray(img.convert("L")))
    assert gray.shape == (40, 48)
    t = tf(torch.from_numpy(PHOTOS[2].copy()).permute(2, 0, 1).contiguous())
    assert t.shape == (3, 40, 48) and t.dtype == torch.uint8
    tf.magnitude = 3
    assert tf.ra.magnitude == 3
