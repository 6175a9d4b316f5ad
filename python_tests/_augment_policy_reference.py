"""Frozen copy of RandAugment's parameter generation as it was before it became table-driven (issue 26): the
per-op loop of ``RandAugment.chain_args``, ``_op_args`` and the per-sample loop of ``rotate_matrix``, verbatim
except that ``chain_args`` takes the RandAugment as its first argument. The vectorised implementation must
reproduce it bit for bit (python_tests/test_augment_param_tables.py) and is timed against it
(python_tests/benchmarks/test_bench_augment_params.py). Do not edit: it is the reference, not the code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from efficienttrain_ext.augment import functional as F
from efficienttrain_ext.augment.policy import KNOWN_OPS, LEVEL_DENOM


def chain_args(ra, draws: Mapping[str, torch.Tensor], height: int, width: int):
    """(op codes [N, L], params [N, L, 6] float64, interp [N, L]) of all slots, from :meth:`draw`'s output."""
    idx = draws["op"].reshape(-1)
    applied = draws["applied"].reshape(-1)
    lvl = draws["magnitude"].reshape(-1) / LEVEL_DENOM
    sign = torch.where(draws["negate"].reshape(-1), -1.0, 1.0).to(torch.float64)
    blur_u = draws.get("blur_u")
    blur_u = blur_u.reshape(-1).to(torch.float64) if blur_u is not None else None
    m = idx.shape[0]
    code = torch.zeros(m, dtype=torch.int64)
    params = torch.zeros((m, F.NUM_PARAMS), dtype=torch.float64)
    live = torch.where(applied, idx, -1)
    present = torch.bincount(live[applied], minlength=len(ra.ops)).tolist() if m else []
    for k, name in enumerate(ra.ops):
        if not present[k]:
            continue
        sel = live == k
        if name == "GaussianBlurRand" and blur_u is None:
            raise ValueError("draws: GaussianBlurRand needs draws['blur_u'] (the radius uniforms)")
        c, p = _op_args(name, lvl[sel], sign[sel], height, width, ra.translate_pct, ra.translate_const,
                        blur_u[sel] if blur_u is not None else None)
        code[sel] = c
        params[sel] = p
    shape = draws["op"].shape
    return code.reshape(shape), params.reshape(*shape, F.NUM_PARAMS), draws["interp"].clone()


def _op_args(name: str, lvl: torch.Tensor, sign: torch.Tensor, h: int, w: int, translate_pct: float,
             translate_const: float, u: torch.Tensor | None = None) -> tuple[int, torch.Tensor]:
    """timm's level_to_arg for ``name`` at levels ``lvl`` = magnitude / 10 (float64 [M]) and signs, as our op code
    and kernel params [M, 6]. ``u``: GaussianBlurRand's uniforms in [0, 1) (its radius draw)."""
    m = lvl.shape[0]
    p = torch.zeros((m, F.NUM_PARAMS), dtype=torch.float64)
    C = F.OP_CODES
    if name in ("AutoContrast", "Equalize", "Invert"):
        return C[{"AutoContrast": "auto_contrast", "Equalize": "equalize", "Invert": "invert"}[name]], p
    if name == "Rotate":
        return C["affine"], rotate_matrix(lvl * 30.0 * sign, w, h)
    if name in ("ShearX", "ShearY", "TranslateXRel", "TranslateYRel", "TranslateX", "TranslateY"):
        p[:, 0] = 1.0
        p[:, 4] = 1.0
        if name == "ShearX":
            p[:, 1] = lvl * 0.3 * sign
        elif name == "ShearY":
            p[:, 3] = lvl * 0.3 * sign
        elif name == "TranslateXRel":
            p[:, 2] = (lvl * translate_pct * sign) * w
        elif name == "TranslateYRel":
            p[:, 5] = (lvl * translate_pct * sign) * h
        elif name == "TranslateX":
            p[:, 2] = lvl * translate_const * sign
        else:
            p[:, 5] = lvl * translate_const * sign
        return C["affine"], p
    if name.startswith("Posterize"):
        bits = torch.trunc(lvl * 4)
        if name == "PosterizeIncreasing":
            bits = 4 - bits
        elif name == "PosterizeOriginal":
            bits = bits + 4
        p[:, 0] = bits.clamp(min=1)  # Pillow >= 10 rejects 0 bits (timm would crash); keep 1
        return C["posterize"], p
    if name.startswith("Solarize") and name != "SolarizeAdd":
        t = torch.clamp(torch.trunc(lvl * 256), max=256)
        p[:, 0] = 256 - t if name == "SolarizeIncreasing" else t
        return C["solarize"], p
    if name == "SolarizeAdd":
        p[:, 0] = torch.clamp(torch.trunc(lvl * 110), max=128)
        p[:, 1] = 128
        return C["solarize_add"], p
    if name == "GaussianBlur":
        # _minmax_level_to_arg(min_val=0.1, max_val=2.0): 0.1 + (2.0 - 0.1) * level, clamped to [0.1, 2.0]
        p[:, 0] = (0.1 + (2.0 - 0.1) * lvl).clamp(0.1, 2.0)
        return C["gaussian_blur"], p
    if name == "GaussianBlurRand":
        # _minmax_level_to_arg (0..1) -> factor; gaussian_blur_rand: radius = random.uniform(0.1, 2.0 * factor)
        if u is None:
            raise ValueError("GaussianBlurRand needs its radius uniforms u")
        factor = (0.0 + (1.0 - 0.0) * lvl).clamp(0.0, 1.0)
        p[:, 0] = F.gaussian_blur_rand_radius(factor, u)
        return C["gaussian_blur"], p
    if name == "Desaturate":
        level = (0.5 + 0.5 * lvl).clamp(0.5, 1.0)
        p[:, 0] = (1.0 - level).clamp(0.0, 1.0)
        return C["color"], p
    for base in ("Color", "Contrast", "Brightness", "Sharpness"):
        if name == base:
            p[:, 0] = lvl * 1.8 + 0.1
            return C[base.lower()], p
        if name == base + "Increasing":
            p[:, 0] = torch.clamp(1.0 + (lvl * 0.9) * sign, min=0.1)
            return C[base.lower()], p
    raise ValueError(f"unknown op {name!r}; known: {KNOWN_OPS}")


def rotate_matrix(degrees: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """[N, 6] matrices of Pillow's ``Image.rotate(angle)`` (expand=False, centre (w/2, h/2)), computed with
    Python's math exactly as Pillow does (round(cos, 15), ...) so that the kernels see identical coefficients."""
    rows = []
    cx, cy = w / 2.0, h / 2.0
    for deg in degrees.tolist():
        ang = -math.radians(deg % 360.0)
        a, b = round(math.cos(ang), 15), round(math.sin(ang), 15)
        d, e = round(-math.sin(ang), 15), round(math.cos(ang), 15)
        c = a * -cx + b * -cy + 0.0
        f = d * -cx + e * -cy + 0.0
        rows.append((a, b, c + cx, d, e, f + cy))
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 6)
