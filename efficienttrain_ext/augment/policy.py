"""timm-compatible RandAugment over uint8 batches: every sample draws its own ops, magnitudes, signs and
interpolation.

A batch is one call of ``torch.ops.etrain.augment_chain`` (the ``n`` op slots in sequence; on CUDA up to five kernel
launches per slot, only those the slot's drawn ops need, after one upload of all arguments from a pinned buffer).
The arguments come from the draws through a per-op table (:class:`_OpTable`): a fixed sequence of tensor ops for
the whole batch, bit-identical to evaluating timm's level_to_arg op by op. The draws follow
``timm.data.auto_augment`` (RandAugment + AugmentOp) exactly in distribution:

* ops: ``n`` per image, uniformly with replacement from the transform list (``t`` weighted lists: without
  replacement, as timm's ``np.random.choice(..., replace=False, p=w)``); transform sets: the default list, ``inc1``
  (the ``*Increasing`` list), ``tweights``, ``t3a`` and ``t3aw`` (timm's 3-Augment sets, with GaussianBlur);
* each op is applied with probability ``p`` (timm: skipped when ``random() > p``);
* magnitude: ``m``, or ``N(m, mstd)`` for ``mstd > 0``, or ``U(0, m)`` for ``mstd = inf`` (``mstd > 100`` in the
  string), then clipped to ``[0, mmax]`` (``mmax`` default 10; ``mmax0`` means 10 as in timm);
* signs: each signed argument (rotate, shear, translate, ``*Increasing`` enhance) is negated with probability 1/2;
* interpolation: ``hparams['interpolation']`` if given (a Pillow code/str, or a sequence to choose from per
  sample), else bilinear or bicubic with probability 1/2 each;
* fill colour: ``hparams['img_mean']`` (default (128, 128, 128));
* GaussianBlurRand (only in a ``transforms`` list): its radius ``uniform(0.1, 2 * factor)`` from one more uniform
  per slot (``draw()["blur_u"]``, drawn after the others and only when the op list contains it).

The random numbers come from a ``torch.Generator`` (CPU), so a seeded generator reproduces a call exactly, on the
CPU or the GPU; they are not timm's Python/NumPy streams, so individual images differ from timm's, but the
distribution is the same (tested). One deliberate difference: a posterize level of 0 bits (which Pillow >= 10
rejects, crashing timm) keeps 1 bit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import functional as F

__all__ = ["RandAugment", "RandAugmentTransform", "from_timm_string", "parse_policy", "RAND_TRANSFORMS",
           "RAND_INCREASING_TRANSFORMS", "RAND_WEIGHTED_0", "RAND_3A", "RAND_WEIGHTED_3A"]

LEVEL_DENOM = 10.0

RAND_TRANSFORMS = [
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
]
RAND_INCREASING_TRANSFORMS = [
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
    "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
    "TranslateXRel", "TranslateYRel",
]
RAND_WEIGHTED_0 = {
    "Rotate": 3, "ShearX": 2, "ShearY": 2, "TranslateXRel": 1, "TranslateYRel": 1, "ColorIncreasing": .25,
    "SharpnessIncreasing": 0.25, "AutoContrast": 0.25, "SolarizeIncreasing": .05, "SolarizeAdd": .05,
    "ContrastIncreasing": .05, "BrightnessIncreasing": .05, "Equalize": .05, "PosterizeIncreasing": 0.05,
    "Invert": 0.05,
}
RAND_3A = ["SolarizeIncreasing", "Desaturate", "GaussianBlur"]
RAND_WEIGHTED_3A = {
    "SolarizeIncreasing": 6, "Desaturate": 6, "GaussianBlur": 6, "Rotate": 3, "ShearX": 2, "ShearY": 2,
    "PosterizeIncreasing": 1, "AutoContrast": 1, "ColorIncreasing": 1, "SharpnessIncreasing": 1,
    "ContrastIncreasing": 1, "BrightnessIncreasing": 1, "Equalize": 1, "Invert": 1,
}
# Every op name this module implements (timm's NAME_TO_OP).
KNOWN_OPS = sorted(set(RAND_TRANSFORMS) | set(RAND_INCREASING_TRANSFORMS) | {
    "PosterizeOriginal", "TranslateX", "TranslateY", "Desaturate", "GaussianBlur", "GaussianBlurRand"})

_HPARAM_KEYS = ("translate_const", "translate_pct", "img_mean", "interpolation", "magnitude_std", "magnitude_max")
_FILL = (128, 128, 128)


def parse_policy(policy: str) -> dict[str, Any]:
    """Parse a timm RandAugment string (``rand-m9-n2-p0.5-mstd0.5-mmax10-inc1-tweights``) into a dict with keys
    magnitude, num_layers, prob, magnitude_std, magnitude_max, increasing, transforms. Unknown or malformed
    sections raise ValueError (timm asserts on unknown keys and silently skips sections without a number)."""
    if not isinstance(policy, str):
        raise TypeError(f"policy: expected a string such as 'rand-m9-mstd0.5-inc1', got {type(policy).__name__}")
    parts = policy.split("-")
    if parts[0] != "rand":
        raise ValueError(f"policy {policy!r}: must start with 'rand' (only timm's RandAugment strings are supported)")
    cfg: dict[str, Any] = dict(magnitude=LEVEL_DENOM, num_layers=2, prob=0.5, magnitude_std=None, magnitude_max=None,
                               increasing=False, transforms=None)
    for c in parts[1:]:
        if c.startswith("t"):
            cfg["transforms"] = c[1:]
            continue
        cs = re.split(r"(\d.*)", c)
        if len(cs) < 2:
            raise ValueError(f"policy {policy!r}: section {c!r} has no numeric value; expected one of m<int>, "
                             "n<int>, p<float>, mstd<float>, mmax<int>, inc<0|1>, t<name>")
        key, val = cs[0], cs[1]
        try:
            if key == "mstd":
                v = float(val)
                cfg["magnitude_std"] = math.inf if v > 100 else v
            elif key == "mmax":
                cfg["magnitude_max"] = int(val)
            elif key == "inc":
                cfg["increasing"] = bool(int(val))
            elif key == "m":
                cfg["magnitude"] = float(val)
            elif key == "n":
                cfg["num_layers"] = int(val)
            elif key == "p":
                cfg["prob"] = float(val)
            else:
                raise ValueError(f"policy {policy!r}: unknown section key {key!r}; known keys: m, n, p, mstd, mmax, "
                                 "inc, t")
        except ValueError as e:
            if "unknown section key" in str(e):
                raise
            raise ValueError(f"policy {policy!r}: cannot parse the value of section {c!r}") from None
    if cfg["num_layers"] < 0:
        raise ValueError(f"policy {policy!r}: n must be >= 0")
    if not 0.0 <= cfg["prob"] <= 1.0:
        raise ValueError(f"policy {policy!r}: p must be in [0, 1], got {cfg['prob']}")
    if cfg["magnitude_std"] is not None and cfg["magnitude_std"] < 0:
        raise ValueError(f"policy {policy!r}: mstd must be >= 0")
    return cfg


def _transform_list(spec, increasing: bool) -> tuple[list[str], list[float] | None]:
    """timm's rand_augment_choices (a set name) or an explicit list / {name: weight} dict -> (ops, weights)."""
    if spec is None or (isinstance(spec, str) and spec == ""):
        return list(RAND_INCREASING_TRANSFORMS if increasing else RAND_TRANSFORMS), None
    if isinstance(spec, str):
        if spec == "weights":
            spec = RAND_WEIGHTED_0
        elif spec == "3aw":
            spec = RAND_WEIGHTED_3A
        elif spec == "3a":
            return list(RAND_3A), None
        else:
            raise ValueError(f"unknown transform set 't{spec}'; known: 'tweights', 't3a', 't3aw' (or none for the "
                             "default list)")
    if isinstance(spec, Mapping):
        ops = [str(k) for k in spec]
        weights = [float(v) for v in spec.values()]
        if not ops or any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"transforms: weights must be finite, >= 0 and not all 0, got {dict(spec)!r}")
    elif isinstance(spec, Sequence):
        ops, weights = [str(k) for k in spec], None
        if not ops:
            raise ValueError("transforms: empty list of ops")
    else:
        raise TypeError(f"transforms: expected a set name, a list of op names or a {{name: weight}} dict, got "
                        f"{type(spec).__name__}")
    unknown = [o for o in ops if o not in KNOWN_OPS]
    if unknown:
        raise ValueError(f"transforms: unknown ops {unknown}; known: {KNOWN_OPS}")
    return ops, weights


def _interp_choices(spec) -> list[int]:
    """hparams['interpolation'] -> list of our interpolation codes to choose from uniformly."""
    if spec is None:
        return [F.INTERP_CODES["bilinear"], F.INTERP_CODES["bicubic"]]
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    out = []
    for it in items:
        if isinstance(it, str) and it.lower() in F.INTERP_CODES:
            out.append(F.INTERP_CODES[it.lower()])
        elif isinstance(it, int) and int(it) in F._PIL_TO_INTERP:
            out.append(F._PIL_TO_INTERP[int(it)])
        else:
            raise ValueError(f"hparams['interpolation']: expected 'nearest', 'bilinear', 'bicubic' or a Pillow code "
                             f"0/2/3 (or a sequence of them), got {it!r}")
    if not out:
        raise ValueError("hparams['interpolation']: empty sequence")
    return out


def _check_magnitude(v, name: str = "magnitude") -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(v).__name__}")
    v = float(v)
    if math.isnan(v) or math.isinf(v):
        raise ValueError(f"{name}: must be a finite number >= 0, got {v}")
    if v < 0:
        raise ValueError(f"{name}: must be >= 0, got {v}")
    return v


class RandAugment:
    """timm's RandAugment on a uint8 batch ``[N, C, H, W]`` (C = 1 or 3), CPU or CUDA, per-sample draws.

    ``policy``: timm's string (see :func:`parse_policy`); ``hparams``: timm's hparams (``translate_const``,
    ``translate_pct``, ``img_mean``, ``interpolation``, ``magnitude_std``, ``magnitude_max``; values given here
    take precedence over the string's mstd/mmax, as in timm); ``generator``: a CPU ``torch.Generator`` for the
    draws (default: torch's global generator); ``transforms``: as timm's ``rand_augment_transform(...,
    transforms=)``, a set name (``"weights"``, ``"3a"``, ``"3aw"``), a list of op names or a ``{name: weight}``
    dict (weighted: without replacement); it wins over the string's ``t`` section. ``magnitude`` is settable at
    any time (e.g. per step from :meth:`magnitude_at`).
    """

    def __init__(self, policy: str = "rand-m9-mstd0.5-inc1", hparams: Mapping[str, Any] | None = None,
                 generator: torch.Generator | None = None, *,
                 transforms: str | Sequence[str] | Mapping[str, float] | None = None):
        cfg = parse_policy(policy)
        hp = dict(hparams or {})
        unknown = sorted(set(hp) - set(_HPARAM_KEYS))
        if unknown:
            raise ValueError(f"hparams: unknown keys {unknown}; known: {list(_HPARAM_KEYS)}")
        self.policy = policy
        self.hparams = hp
        self.ops, self.weights = _transform_list(transforms if transforms is not None else cfg["transforms"],
                                                 cfg["increasing"])
        self.num_layers = int(cfg["num_layers"])
        self.prob = float(cfg["prob"])
        mstd = hp.get("magnitude_std", cfg["magnitude_std"])
        self.magnitude_std = float(mstd or 0.0)
        if math.isnan(self.magnitude_std) or self.magnitude_std < 0:
            raise ValueError(f"magnitude_std must be >= 0 (inf for uniform), got {self.magnitude_std}")
        mmax = hp.get("magnitude_max", cfg["magnitude_max"])
        self.magnitude_max = float(mmax) if mmax else LEVEL_DENOM  # timm: `magnitude_max or _LEVEL_DENOM`
        if self.weights is not None and self.num_layers > len(self.ops):
            raise ValueError(f"n={self.num_layers} ops without replacement from {len(self.ops)} weighted ops")
        self.translate_pct = float(hp.get("translate_pct", 0.45))
        self.translate_const = float(hp.get("translate_const", 250))
        mean = hp.get("img_mean", _FILL)
        mean = (mean,) if isinstance(mean, (int, float)) else tuple(mean)
        if not mean or any(not 0 <= float(v) <= 255 for v in mean):
            raise ValueError(f"hparams['img_mean']: expected a colour with values in [0, 255], got {mean!r}")
        self.fill = tuple(int(round(float(v))) for v in mean)
        self.interp_choices = _interp_choices(hp.get("interpolation"))
        self._table = _OpTable(self.ops, self.translate_pct, self.translate_const)
        self._fills: dict[tuple, torch.Tensor] = {}  # the fill colour per (channels, self.fill)
        self.generator = generator
        self.magnitude = cfg["magnitude"]

    # -- magnitude --
    @property
    def magnitude(self) -> float:
        return self._magnitude

    @magnitude.setter
    def magnitude(self, v: float) -> None:
        self._magnitude = _check_magnitude(v)

    @staticmethod
    def magnitude_at(progress: float, m0: float = 9.0) -> float:
        """EfficientTrain's weak-to-strong schedule: ``m0 * progress`` with progress = t / T clipped to [0, 1]."""
        p = _check_magnitude(progress, "progress")
        return _check_magnitude(m0, "m0") * min(1.0, p)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(policy={self.policy!r}, magnitude={self.magnitude:g}, n={self.num_layers}, "
                f"p={self.prob:g}, mstd={self.magnitude_std:g}, mmax={self.magnitude_max:g}, ops={len(self.ops)})")

    # -- draws --
    def draw(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The random choices for ``n`` images: ``op`` [n, L] (index into ``self.ops``), ``applied`` [n, L] bool,
        ``magnitude`` [n, L] float64 (after clipping), ``negate`` [n, L] bool, ``interp`` [n, L] int64, and, when
        the op list has GaussianBlurRand, ``blur_u`` [n, L] float64 in [0, 1) (its radius draw)."""
        g = generator if generator is not None else self.generator
        L = self.num_layers
        k = len(self.ops)
        if self.weights is None:
            op = torch.randint(0, k, (n, L), generator=g)
        else:
            w = torch.tensor(self.weights, dtype=torch.float64).expand(n, k)
            op = torch.multinomial(w, L, replacement=False, generator=g) if n and L else torch.zeros(n, L, dtype=torch.int64)
        u = torch.rand((n, L), generator=g, dtype=torch.float64)
        applied = (u <= self.prob) if self.prob < 1.0 else torch.ones((n, L), dtype=torch.bool)
        m = torch.full((n, L), self.magnitude, dtype=torch.float64)
        if self.magnitude_std > 0:
            if math.isinf(self.magnitude_std):
                m = torch.rand((n, L), generator=g, dtype=torch.float64) * self.magnitude
            else:
                m = m + self.magnitude_std * torch.randn((n, L), generator=g, dtype=torch.float64)
        m = m.clamp(0.0, self.magnitude_max)
        negate = torch.rand((n, L), generator=g, dtype=torch.float64) > 0.5
        ch = torch.tensor(self.interp_choices, dtype=torch.int64)
        interp = ch[torch.randint(0, len(ch), (n, L), generator=g)]
        out = dict(op=op, applied=applied, magnitude=m, negate=negate, interp=interp)
        if "GaussianBlurRand" in self.ops:  # drawn last, so that the other draws do not depend on it
            out["blur_u"] = torch.rand((n, L), generator=g, dtype=torch.float64)
        return out

    def chain_args(self, draws: Mapping[str, torch.Tensor], height: int, width: int):
        """(op codes [N, L], params [N, L, 6] float64, interp [N, L]) of all slots, from :meth:`draw`'s output:
        one pass of tensor ops over every slot, through this policy's op table (:class:`_OpTable`)."""
        shape = draws["op"].shape
        applied = draws["applied"].reshape(-1)
        blur_u = draws.get("blur_u")
        code, params = self._table.args(draws["op"].reshape(-1), draws["magnitude"].reshape(-1) / LEVEL_DENOM,
                                        draws["negate"].reshape(-1), height, width,
                                        blur_u.reshape(-1) if blur_u is not None else None, applied)
        code = torch.where(applied, code, 0)  # a skipped op is the identity, with zero params
        params = torch.where(applied[:, None], params, 0.0)
        return code.reshape(shape), params.reshape(*shape, F.NUM_PARAMS), draws["interp"].clone()

    def slot_args(self, draws: Mapping[str, torch.Tensor], slot: int, height: int, width: int):
        """(op codes [N], params [N, 6] float64, interp [N]) of one slot, from :meth:`draw`'s output."""
        code, params, interp = self.chain_args(draws, height, width)
        return code[:, slot], params[:, slot], interp[:, slot]

    def chain_inputs(self, n: int, c: int, h: int, w: int, generator: torch.Generator | None = None):
        """The host arguments of ``augment_chain`` for a batch of ``n`` c x h x w images, freshly drawn: (op [n, L],
        params [n, L, 6], interp [n, L], fill [n, c]). Everything RandAugment does on the host before the op."""
        code, params, interp = self.chain_args(self.draw(n, generator), h, w)
        fill = self._fills.get((c, self.fill))
        if fill is None:
            fill = self._fills[(c, self.fill)] = torch.tensor((list(self.fill) * 3)[:c] if len(self.fill) < c else
                                                 list(self.fill[:c]), dtype=torch.uint8)
        return code, params, interp, fill.expand(n, c)

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        F.check_batch(batch, "batch")
        n, c, h, w = batch.shape
        if n == 0 or self.num_layers == 0:
            return batch.clone()
        return F.apply_chain(batch, *self.chain_inputs(n, c, h, w, generator))


_INF = math.inf
# A step that an op does not take: x * 1.0, -0.0 + x and a clamp to [-inf, inf] return x bit for bit (-0.0 is the
# additive identity; 0.0 + -0.0 would be +0.0).
_NO_CLAMP = (-_INF, _INF)
_NO_AFFINE = (-0.0, 1.0)
# Where a value-less op (AutoContrast, Equalize, Invert, Rotate) writes its value: a 7th params column, dropped.
_SPARE = F.NUM_PARAMS


def _op_row(name: str, translate_pct: float, translate_const: float) -> dict[str, Any]:
    """timm's level_to_arg for ``name`` as one row of :class:`_OpTable`: the kernel op code, the params column that
    gets the value (the others from ``base``), and the constants of the value's steps from the level ``lvl`` =
    magnitude / 10 and the sign s (see _OpTable.args). Each formula is written as the steps in the order in which
    timm (and the previous per-op code) evaluates it, so that the float64 result is the same to the bit."""
    C = F.OP_CODES
    eye = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    r: dict[str, Any] = dict(code=C["identity"], col=_SPARE, base=(0.0,) * 6, scale=1.0, signed=False, trunc=False,
                             side=0, clamp1=_NO_CLAMP, affine1=_NO_AFFINE, clamp2=_NO_CLAMP, affine2=_NO_AFFINE,
                             clamp3=_NO_CLAMP, rotate=False, blur_rand=False)
    if name in ("AutoContrast", "Equalize", "Invert"):
        r["code"] = C[{"AutoContrast": "auto_contrast", "Equalize": "equalize", "Invert": "invert"}[name]]
    elif name == "Rotate":  # degrees = lvl * 30 * s -> Pillow's matrix
        r.update(code=C["affine"], scale=30.0, signed=True, rotate=True)
    elif name in ("ShearX", "ShearY"):  # lvl * 0.3 * s
        r.update(code=C["affine"], base=eye, col=1 if name == "ShearX" else 3, scale=0.3, signed=True)
    elif name in ("TranslateXRel", "TranslateYRel"):  # lvl * pct * s * side
        x = name == "TranslateXRel"
        r.update(code=C["affine"], base=eye, col=2 if x else 5, scale=translate_pct, signed=True, side=1 if x else 2)
    elif name in ("TranslateX", "TranslateY"):  # lvl * const * s
        r.update(code=C["affine"], base=eye, col=2 if name == "TranslateX" else 5, scale=translate_const, signed=True)
    elif name.startswith("Posterize"):  # bits = trunc(lvl * 4) (4 - bits, bits + 4); Pillow >= 10 rejects 0: keep 1
        add = {"PosterizeIncreasing": (4.0, -1.0), "PosterizeOriginal": (4.0, 1.0)}.get(name, _NO_AFFINE)
        r.update(code=C["posterize"], col=0, scale=4.0, trunc=True, affine1=add, clamp2=(1.0, _INF))
    elif name in ("Solarize", "SolarizeIncreasing"):  # t = min(trunc(lvl * 256), 256) (256 - t)
        r.update(code=C["solarize"], col=0, scale=256.0, trunc=True, clamp1=(-_INF, 256.0),
                 affine1=(256.0, -1.0) if name == "SolarizeIncreasing" else _NO_AFFINE)
    elif name == "SolarizeAdd":  # add = min(trunc(lvl * 110), 128), threshold 128
        r.update(code=C["solarize_add"], col=0, base=(0.0, 128.0, 0.0, 0.0, 0.0, 0.0), scale=110.0, trunc=True,
                 clamp1=(-_INF, 128.0))
    elif name == "GaussianBlur":  # _minmax_level_to_arg(0.1, 2.0): clamp(0.1 + (2.0 - 0.1) * lvl, 0.1, 2.0)
        r.update(code=C["gaussian_blur"], col=0, scale=2.0 - 0.1, affine1=(0.1, 1.0), clamp2=(0.1, 2.0))
    elif name == "GaussianBlurRand":  # factor = clamp(0 + (1 - 0) * lvl, 0, 1); radius = uniform(0.1, 2 * factor)
        r.update(code=C["gaussian_blur"], col=0, scale=1.0 - 0.0, affine1=(0.0, 1.0), clamp2=(0.0, 1.0),
                 blur_rand=True)
    elif name == "Desaturate":  # level = clamp(0.5 + 0.5 * lvl, 0.5, 1); factor = clamp(1 - level, 0, 1)
        r.update(code=C["color"], col=0, scale=0.5, affine1=(0.5, 1.0), clamp2=(0.5, 1.0), affine2=(1.0, -1.0),
                 clamp3=(0.0, 1.0))
    elif name in ("Color", "Contrast", "Brightness", "Sharpness"):  # lvl * 1.8 + 0.1
        r.update(code=C[name.lower()], col=0, scale=1.8, affine1=(0.1, 1.0))
    elif name in ("ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"):
        # max(1.0 + lvl * 0.9 * s, 0.1)
        r.update(code=C[name.removesuffix("Increasing").lower()], col=0, scale=0.9, signed=True, affine1=(1.0, 1.0),
                 clamp2=(0.1, _INF))
    else:
        raise ValueError(f"unknown op {name!r}; known: {KNOWN_OPS}")
    return r


class _OpTable:
    """The level-to-argument rows (:func:`_op_row`) of a policy's op list as tensors, so that the arguments of all
    slots of a batch come from two gathers and a fixed sequence of float64 tensor ops, whatever ops were drawn:

        v = lvl * scale;  v = v * s (signed);  v = trunc(v) (trunc);  v = v * W or H (side)
        v = clamp(v, clamp1);  v = add1 + mul1 * v;  v = clamp(v, clamp2);  v = add2 + mul2 * v;  v = clamp(v, clamp3)

    then Rotate's rows become Pillow's matrices and GaussianBlurRand's its drawn radius. An op that does not take a
    step passes it as an exact identity (x * 1.0, -0.0 + x, a clamp to +-inf); a step that no op of the list takes
    is not run at all. The host cost is what matters here (hundreds of microseconds of Python per batch before):
    every number of a row (the steps' constants, the op code, the params column and the other params) sits in one
    [ops, columns] table per image size, gathered once per call."""

    _COLS = ("scale", "neg", "trunc", "side", "lo1", "hi1", "add1", "mul1", "lo2", "hi2", "add2", "mul2", "lo3", "hi3",
             "col", "code", "rotate", "blur_rand")

    def __init__(self, ops: Sequence[str], translate_pct: float, translate_const: float):
        self.rows = [_op_row(name, translate_pct, translate_const) for name in ops]
        self.code = torch.tensor([r["code"] for r in self.rows], dtype=torch.int64)
        rows = self.rows
        # The steps some op of this list takes (the others are identities for every row, so they are skipped).
        self.used = {k for k in ("signed", "trunc", "side") if any(r[k] for r in rows)}
        self.used |= {k for k in ("clamp1", "clamp2", "clamp3") if any(r[k] != _NO_CLAMP for r in rows)}
        self.used |= {k for k in ("affine1", "affine2") if any(r[k] != _NO_AFFINE for r in rows)}
        self.used |= {k for k in ("rotate", "blur_rand") if any(r[k] for r in rows)}
        self._sized: dict[tuple[int, int], torch.Tensor] = {}
        self._at = {k: i for i, k in enumerate(self._COLS)}

    def _columns(self, h: int, w: int) -> torch.Tensor:
        """[ops, columns] float64 for an h x w image (side = the W or H that TranslateXRel/YRel multiply by): the
        _COLS, then the 7 params (the spare column last)."""
        t = self._sized.get((h, w))
        if t is None:
            t = torch.tensor([(r["scale"], -1.0 if r["signed"] else 1.0, float(r["trunc"]),
                               {0: 1.0, 1: float(w), 2: float(h)}[r["side"]], *r["clamp1"], *r["affine1"], *r["clamp2"],
                               *r["affine2"], *r["clamp3"], float(r["col"]), float(r["code"]), float(r["rotate"]),
                               float(r["blur_rand"]), *r["base"], 0.0) for r in self.rows], dtype=torch.float64)
            if len(self._sized) >= 16:  # a handful of sizes per run; bound it anyway
                self._sized.clear()
            self._sized[(h, w)] = t
        return t

    def args(self, idx: torch.Tensor, lvl: torch.Tensor, negate: torch.Tensor, h: int, w: int,
             blur_u: torch.Tensor | None = None, live: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(op codes [M], params [M, 6] float64) for op indices ``idx`` [M] into the list, levels ``lvl`` [M]
        (magnitude / 10, float64), ``negate`` [M] bool, an h x w image and GaussianBlurRand's uniforms ``blur_u``
        [M]. ``live`` [M] bool: the slots that are applied (only those need ``blur_u``); default all."""
        g = self._columns(h, w).index_select(0, idx)
        t = g.t()  # column views
        c, used = self._at, self.used
        v = lvl * t[c["scale"]]
        if "signed" in used:
            v = v * torch.where(negate, t[c["neg"]], 1.0)
        if "trunc" in used:
            v = torch.where(t[c["trunc"]] != 0, torch.trunc(v), v)
        if "side" in used:
            v = v * t[c["side"]]
        if "clamp1" in used:
            v = torch.clamp(v, t[c["lo1"]], t[c["hi1"]])
        if "affine1" in used:
            v = t[c["add1"]] + t[c["mul1"]] * v
        if "clamp2" in used:
            v = torch.clamp(v, t[c["lo2"]], t[c["hi2"]])
        if "affine2" in used:
            v = t[c["add2"]] + t[c["mul2"]] * v
        if "clamp3" in used:
            v = torch.clamp(v, t[c["lo3"]], t[c["hi3"]])
        params = g[:, len(self._COLS):].clone()
        params.scatter_(1, t[c["col"]].to(torch.int64).unsqueeze(1), v.unsqueeze(1))
        params = params[:, :F.NUM_PARAMS]
        if "blur_rand" in used:
            rand = t[c["blur_rand"]] != 0
            need = rand if live is None else rand & live
            if bool(need.any()):
                if blur_u is None:
                    raise ValueError("draws: GaussianBlurRand needs draws['blur_u'] (the radius uniforms)")
                params[:, 0] = torch.where(rand, F.gaussian_blur_rand_radius(v, blur_u.to(torch.float64)), params[:, 0])
        if "rotate" in used:
            rot = t[c["rotate"]] != 0
            rot = torch.nonzero(rot if live is None else rot & live).squeeze(1)
            if rot.numel():
                params[rot] = F.rotate_matrix(v.index_select(0, rot), w, h)
        return t[c["code"]].to(torch.int64), params


def _op_args(name: str, lvl: torch.Tensor, sign: torch.Tensor, h: int, w: int, translate_pct: float,
             translate_const: float, u: torch.Tensor | None = None) -> tuple[int, torch.Tensor]:
    """timm's level_to_arg for ``name`` at levels ``lvl`` = magnitude / 10 (float64 [M]) and signs (+-1.0), as our op
    code and kernel params [M, 6]. ``u``: GaussianBlurRand's uniforms in [0, 1) (its radius draw)."""
    if name == "GaussianBlurRand" and u is None:
        raise ValueError("GaussianBlurRand needs its radius uniforms u")
    table = _OpTable([name], translate_pct, translate_const)
    _, params = table.args(torch.zeros(lvl.shape[0], dtype=torch.int64), lvl, sign < 0, h, w, u)
    return int(table.code[0]), params


def from_timm_string(aa_string: str, img_size: int | Sequence[int], mean: Sequence[float] = (0.485, 0.456, 0.406),
                     interpolation: str = "random", generator: torch.Generator | None = None) -> RandAugment:
    """The RandAugment that timm's ``create_transform(..., auto_augment=aa_string)`` builds for a training image
    size and normalisation mean: translate_const = int(0.45 * min size), fill = the mean in 0..255, and a fixed
    interpolation unless ``interpolation == "random"``."""
    if not isinstance(aa_string, str) or not aa_string.startswith("rand"):
        raise ValueError(f"from_timm_string: only timm's 'rand-...' policies are supported, got {aa_string!r}")
    size_min = img_size if isinstance(img_size, int) else min(img_size)
    hp: dict[str, Any] = dict(translate_const=int(size_min * 0.45),
                              img_mean=tuple(min(255, round(255 * x)) for x in mean))
    if interpolation and interpolation != "random":
        hp["interpolation"] = interpolation
    return RandAugment(aa_string, hp, generator=generator)


class RandAugmentTransform:
    """Per-image RandAugment for DataLoader workers (CPU): takes a PIL image, an HWC uint8 numpy array or a CHW
    uint8 tensor and returns the same type. Draws use torch's global generator (seeded per worker by the
    DataLoader) unless a generator is given. Note that ``magnitude`` set in the main process does not reach
    worker copies that are already running; rebuild the loader's iterator (e.g. per epoch) to change it."""

    def __init__(self, policy: str = "rand-m9-mstd0.5-inc1", hparams: Mapping[str, Any] | None = None,
                 generator: torch.Generator | None = None):
        self.ra = RandAugment(policy, hparams, generator=generator)

    @property
    def magnitude(self) -> float:
        return self.ra.magnitude

    @magnitude.setter
    def magnitude(self, v: float) -> None:
        self.ra.magnitude = v

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.ra!r})"

    def __call__(self, img):
        if isinstance(img, torch.Tensor):
            if img.dim() != 3:
                raise ValueError(f"expected a CHW uint8 tensor, got shape {tuple(img.shape)}")
            return self.ra(img.unsqueeze(0))[0]
        if isinstance(img, Image.Image):
            if img.mode not in ("L", "RGB"):
                raise ValueError(f"expected a PIL image in mode 'L' or 'RGB', got {img.mode!r}")
            arr = np.asarray(img)
            out = self(arr)
            return Image.fromarray(out, img.mode)
        if isinstance(img, np.ndarray):
            if img.dtype != np.uint8 or img.ndim not in (2, 3):
                raise ValueError(f"expected an HW or HWC uint8 array, got {img.dtype} {img.shape}")
            t = torch.from_numpy(np.array(img, copy=True))  # writable copy
            t = t[None] if t.dim() == 2 else t.permute(2, 0, 1)
            out = self.ra(t.unsqueeze(0).contiguous())[0]
            return out[0].numpy() if img.ndim == 2 else out.permute(1, 2, 0).contiguous().numpy()
        raise TypeError(f"expected a PIL image, numpy array or tensor, got {type(img).__name__}")
