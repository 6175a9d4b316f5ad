"""timm's RandAugment op functions on uint8 image batches, every sample with its own arguments.

Each function takes a batch ``x`` (``torch.uint8``, ``[N, C, H, W]``, C = 1 or 3, CPU or CUDA) and the
arguments that the timm function of the same name (``timm.data.auto_augment``) takes after ``level_to_arg``,
as Python scalars (the same for every sample) or tensors of shape ``[N]`` (one value per sample). The
geometric ops also take timm's keyword arguments ``fillcolor`` (a colour, or ``[N, C]`` per sample; default
``None`` = black, as Pillow) and ``resample`` (``"nearest"``, ``"bilinear"``, ``"bicubic"``, a Pillow
resampling code, or a tensor ``[N]`` of Pillow codes; default bicubic as timm's ``_DEFAULT_INTERPOLATION``).

Results reproduce Pillow's C code (see ``docs/augment.md`` for the measured agreement): the one registered op
``torch.ops.etrain.augment_slot`` runs one op per sample over the whole batch in one call.

Why uint8: it is what the decoder and timm's PIL pipeline produce, the ops are defined by Pillow on 8-bit data
(LUTs, truncating blends), so uint8 in / uint8 out is the only format that can match timm bit for bit; it is
also 4x less memory traffic than float32. Normalise to float after augmentation.
"""

from __future__ import annotations

import math
from itertools import repeat
from operator import add, mod, mul, neg

import torch

from ..ops.augment import INTERP_CODES, MAX_BLUR_RADIUS, NUM_PARAMS, OP_CODES, augment_chain, augment_slot
from ..ops.augment import bad_blur_radii as _bad_blur_radii

__all__ = [
    "auto_contrast", "equalize", "invert", "rotate", "posterize", "solarize", "solarize_add", "color", "contrast",
    "brightness", "sharpness", "shear_x", "shear_y", "translate_x_rel", "translate_y_rel", "gaussian_blur",
    "gaussian_blur_rand", "gaussian_blur_rand_radius", "apply_slot", "OP_CODES", "INTERP_CODES",
]

# Pillow's Image.Resampling codes -> ours.
_PIL_TO_INTERP = {0: 0, 2: 1, 3: 2}


def check_batch(x: torch.Tensor, name: str = "x") -> None:
    """Raise ValueError/TypeError unless x is a uint8 [N, 1|3, H, W] tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name}: expected a uint8 batch of shape [N, C, H, W], got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise ValueError(f"{name}: expected dtype torch.uint8 (convert with (x * 255).round().to(torch.uint8) "
                         f"for float images in [0, 1]), got {x.dtype}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{name}: expected 1 or 3 channels, got shape {tuple(x.shape)}")


def _per_sample(v, n: int, name: str) -> torch.Tensor:
    """A scalar or a [N] tensor -> float64 [N] on the CPU; NaN/Inf raise ValueError."""
    if isinstance(v, bool):
        raise TypeError(f"{name}: expected a number or a tensor of shape [N], got a bool")
    if isinstance(v, torch.Tensor):
        t = v.detach().to("cpu", torch.float64)
        if t.dim() == 0:
            t = t.expand(n)
        if t.shape != (n,):
            raise ValueError(f"{name}: expected a scalar or a tensor of shape [{n}], got shape {tuple(v.shape)}")
    elif isinstance(v, (int, float)):
        t = torch.full((n,), float(v), dtype=torch.float64)
    else:
        raise TypeError(f"{name}: expected a number or a tensor of shape [N], got {type(v).__name__}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: values must be finite, got {t[~torch.isfinite(t)][:4].tolist()}")
    return t.contiguous()


def _interp(resample, n: int) -> torch.Tensor:
    if resample is None:
        resample = "bicubic"
    if isinstance(resample, torch.Tensor):
        codes = resample.detach().to("cpu", torch.int64)
        if codes.dim() == 0:
            codes = codes.expand(n)
        if codes.shape != (n,):
            raise ValueError(f"resample: expected a tensor of shape [{n}] of Pillow codes, got {tuple(codes.shape)}")
        bad = ~((codes == 0) | (codes == 2) | (codes == 3))
        if bool(bad.any()):
            raise ValueError("resample: Pillow codes must be 0 (NEAREST), 2 (BILINEAR) or 3 (BICUBIC), got "
                             f"{codes[bad][:4].tolist()}")
        return torch.where(codes == 0, 0, torch.where(codes == 2, 1, 2)).contiguous()
    if isinstance(resample, str):
        key = resample.lower()
        if key not in INTERP_CODES:
            raise ValueError(f"resample: expected one of {sorted(INTERP_CODES)}, got {resample!r}")
        code = INTERP_CODES[key]
    elif isinstance(resample, int) and int(resample) in _PIL_TO_INTERP:
        code = _PIL_TO_INTERP[int(resample)]
    else:
        raise ValueError(f"resample: expected 'nearest', 'bilinear', 'bicubic' or a Pillow code 0/2/3, got {resample!r}")
    return torch.full((n,), code, dtype=torch.int64)


def _fill(fillcolor, n: int, c: int) -> torch.Tensor:
    if fillcolor is None:
        return torch.zeros((n, c), dtype=torch.uint8)
    if isinstance(fillcolor, torch.Tensor):
        f = fillcolor.detach().to("cpu")
        if f.dim() == 2 and f.shape[0] == n and f.shape[1] in (1, 3, c):
            f = f[:, :c] if f.shape[1] >= c else f.expand(n, c)
        elif f.dim() <= 1:
            f = f.reshape(-1)
            f = (f[:c] if f.numel() >= c else f.expand(c)).expand(n, c)
        else:
            raise ValueError(f"fillcolor: expected a colour or a tensor [N, C], got shape {tuple(f.shape)}")
    else:
        vals = [fillcolor] if isinstance(fillcolor, (int, float)) else list(fillcolor)
        if not vals:
            raise ValueError("fillcolor: expected a colour (int or tuple of ints), got an empty sequence")
        vals = vals[:c] if len(vals) >= c else vals * c
        f = torch.tensor(vals[:c], dtype=torch.float64).expand(n, c)
    f = f.to(torch.float64)
    if bool(((f < 0) | (f > 255) | ~torch.isfinite(f)).any()):
        raise ValueError("fillcolor: values must be in [0, 255]")
    return f.round().to(torch.uint8).contiguous()


def apply_slot(x: torch.Tensor, op: torch.Tensor, params: torch.Tensor, interp: torch.Tensor | None = None,
               fill: torch.Tensor | None = None) -> torch.Tensor:
    """Run one op slot: sample i gets op code ``op[i]`` with ``params[i]`` (float64 [N, 6]), ``interp[i]``
    (0 nearest / 1 bilinear / 2 bicubic; default bicubic) and fill colour ``fill[i]`` (uint8 [N, C]; default black).
    CPU tensors are moved to x's device. Codes are in ``OP_CODES``."""
    check_batch(x)
    n, c = x.shape[0], x.shape[1]
    if interp is None:
        interp = torch.full((n,), INTERP_CODES["bicubic"], dtype=torch.int64)
    if fill is None:
        fill = torch.zeros((n, c), dtype=torch.uint8)
    return augment_slot(x, op, params, interp, fill)


def apply_chain(x: torch.Tensor, op: torch.Tensor, params: torch.Tensor, interp: torch.Tensor,
                fill: torch.Tensor) -> torch.Tensor:
    """Run L slots in sequence in one call (RandAugment's n ops per image): sample i gets ``op[i, 0]`` with
    ``params[i, 0]`` and ``interp[i, 0]``, then ``op[i, 1]``, ... (op, interp int64 [N, L]; params float64
    [N, L, 6]; fill uint8 [N, C]). Equal to L calls of :func:`apply_slot`; on the CPU each sample runs its whole
    chain at once (no intermediate batch, identity slots cost nothing)."""
    check_batch(x)
    return augment_chain(x, op, params, interp, fill)


def _run(x, code: str, *cols, interp=None, fill=None) -> torch.Tensor:
    check_batch(x)
    n = x.shape[0]
    params = torch.zeros((n, NUM_PARAMS), dtype=torch.float64)
    for i, col in enumerate(cols):
        params[:, i] = col
    op = torch.full((n,), OP_CODES[code], dtype=torch.int64)
    return apply_slot(x, op, params, interp, fill)


# ---- affine matrices (Pillow's inverse convention: output pixel centre -> input coordinate) ----

def rotate_matrix(degrees: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """[N, 6] matrices of Pillow's ``Image.rotate(angle)`` (expand=False, centre (w/2, h/2)), computed with Python's
    float operations and math exactly as Pillow does (``round(cos(-radians(angle % 360)), 15)``, ...) so that the
    kernels see identical coefficients. Vectorised with ``map`` over builtins (C-level iteration, no bytecode per
    sample) rather than tensor ops: torch.cos (SLEEF) differs from libm in the last bit for ~0.2% of angles, which
    round(., 15) can turn into a different coefficient, and Python's % and round have no exact tensor equivalent."""
    ang = list(map(neg, map(math.radians, map(mod, torch.as_tensor(degrees, dtype=torch.float64).reshape(-1).tolist(),
                                              repeat(360.0)))))
    a = list(map(round, map(math.cos, ang), repeat(15)))
    b = list(map(round, map(math.sin, ang), repeat(15)))
    d, e = list(map(neg, b)), a  # round(-s, 15) == -round(s, 15): Python rounds the magnitude, then signs it
    cx, cy = w / 2.0, h / 2.0

    def centre(p: list[float], q: list[float], shift: float) -> list[float]:  # p * -cx + q * -cy + 0.0 + shift
        t = map(add, map(mul, p, repeat(-cx)), map(mul, q, repeat(-cy)))
        return list(map(add, map(add, t, repeat(0.0)), repeat(shift)))

    return torch.tensor([a, b, centre(a, b, cx), d, e, centre(d, e, cy)], dtype=torch.float64).t().contiguous()


def _affine(x, m: torch.Tensor, fillcolor, resample) -> torch.Tensor:
    check_batch(x)
    n, c = x.shape[0], x.shape[1]
    params = torch.zeros((n, NUM_PARAMS), dtype=torch.float64)
    params[:, :6] = m
    op = torch.full((n,), OP_CODES["affine"], dtype=torch.int64)
    return apply_slot(x, op, params, _interp(resample, n), _fill(fillcolor, n, c))


def _eye(n: int) -> torch.Tensor:
    m = torch.zeros((n, 6), dtype=torch.float64)
    m[:, 0] = 1.0
    m[:, 4] = 1.0
    return m


def rotate(x: torch.Tensor, degrees, fillcolor=None, resample=None, **_) -> torch.Tensor:
    """timm ``rotate``: ``img.rotate(degrees)`` about the centre, same size, counter-clockwise for degrees > 0."""
    check_batch(x)
    deg = _per_sample(degrees, x.shape[0], "degrees")
    return _affine(x, rotate_matrix(deg, x.shape[3], x.shape[2]), fillcolor, resample)


def shear_x(x: torch.Tensor, factor, fillcolor=None, resample=None, **_) -> torch.Tensor:
    """timm ``shear_x``: affine (1, factor, 0, 0, 1, 0)."""
    check_batch(x)
    m = _eye(x.shape[0])
    m[:, 1] = _per_sample(factor, x.shape[0], "factor")
    return _affine(x, m, fillcolor, resample)


def shear_y(x: torch.Tensor, factor, fillcolor=None, resample=None, **_) -> torch.Tensor:
    """timm ``shear_y``: affine (1, 0, 0, factor, 1, 0)."""
    check_batch(x)
    m = _eye(x.shape[0])
    m[:, 3] = _per_sample(factor, x.shape[0], "factor")
    return _affine(x, m, fillcolor, resample)


def translate_x_rel(x: torch.Tensor, pct, fillcolor=None, resample=None, **_) -> torch.Tensor:
    """timm ``translate_x_rel``: affine (1, 0, pct * W, 0, 1, 0) (content moves left for pct > 0)."""
    check_batch(x)
    m = _eye(x.shape[0])
    m[:, 2] = _per_sample(pct, x.shape[0], "pct") * x.shape[3]
    return _affine(x, m, fillcolor, resample)


def translate_y_rel(x: torch.Tensor, pct, fillcolor=None, resample=None, **_) -> torch.Tensor:
    """timm ``translate_y_rel``: affine (1, 0, 0, 0, 1, pct * H)."""
    check_batch(x)
    m = _eye(x.shape[0])
    m[:, 5] = _per_sample(pct, x.shape[0], "pct") * x.shape[2]
    return _affine(x, m, fillcolor, resample)


# ---- colour / histogram ops ----

def auto_contrast(x: torch.Tensor, **_) -> torch.Tensor:
    """timm ``auto_contrast``: ``ImageOps.autocontrast`` per channel (cutoff 0)."""
    return _run(x, "auto_contrast")


def equalize(x: torch.Tensor, **_) -> torch.Tensor:
    """timm ``equalize``: ``ImageOps.equalize`` per channel."""
    return _run(x, "equalize")


def invert(x: torch.Tensor, **_) -> torch.Tensor:
    """timm ``invert``: 255 - x."""
    return _run(x, "invert")


def posterize(x: torch.Tensor, bits_to_keep, **_) -> torch.Tensor:
    """timm ``posterize``: keep the ``bits_to_keep`` most significant bits; >= 8 keeps the image. Pillow rejects
    fewer than 1 bit, and so does this function (ValueError); :class:`RandAugment` clamps to 1 bit instead."""
    check_batch(x)
    bits = _per_sample(bits_to_keep, x.shape[0], "bits_to_keep").trunc()
    if bool((bits < 1).any()):
        raise ValueError(f"bits_to_keep: Pillow's posterize keeps 1 to 8 bits, got {bits[bits < 1][:4].tolist()}")
    return _run(x, "posterize", bits.clamp(max=8))


def solarize(x: torch.Tensor, thresh, **_) -> torch.Tensor:
    """timm ``solarize``: invert values >= thresh."""
    check_batch(x)
    # v < thresh equals v < ceil(thresh) for integer pixel values v (trunc would flip v = 255 at thresh = 255.5)
    return _run(x, "solarize", _per_sample(thresh, x.shape[0], "thresh").ceil())


def solarize_add(x: torch.Tensor, add, thresh=128, **_) -> torch.Tensor:
    """timm ``solarize_add``: values < thresh get min(255, v + add)."""
    check_batch(x)
    n = x.shape[0]
    return _run(x, "solarize_add", _per_sample(add, n, "add").trunc(), _per_sample(thresh, n, "thresh").ceil())


def color(x: torch.Tensor, factor, **_) -> torch.Tensor:
    """timm ``color``: ``ImageEnhance.Color`` (blend with the luma image; identity for 1 channel)."""
    check_batch(x)
    return _run(x, "color", _per_sample(factor, x.shape[0], "factor"))


def contrast(x: torch.Tensor, factor, **_) -> torch.Tensor:
    """timm ``contrast``: ``ImageEnhance.Contrast`` (blend with the rounded mean luma)."""
    check_batch(x)
    return _run(x, "contrast", _per_sample(factor, x.shape[0], "factor"))


def brightness(x: torch.Tensor, factor, **_) -> torch.Tensor:
    """timm ``brightness``: ``ImageEnhance.Brightness`` (blend with black)."""
    check_batch(x)
    return _run(x, "brightness", _per_sample(factor, x.shape[0], "factor"))


def sharpness(x: torch.Tensor, factor, **_) -> torch.Tensor:
    """timm ``sharpness``: ``ImageEnhance.Sharpness`` (blend with ImageFilter.SMOOTH, borders kept)."""
    check_batch(x)
    return _run(x, "sharpness", _per_sample(factor, x.shape[0], "factor"))


# ---- filters ----

def _blur_radius(radius, n: int) -> torch.Tensor:
    r = _per_sample(radius, n, "radius")
    bad = _bad_blur_radii(r)
    if bool(bad.any()):
        raise ValueError(f"radius: GaussianBlur radii must be in [0, {MAX_BLUR_RADIUS:g}], got {r[bad][:4].tolist()} "
                         "(Pillow would blur a negative radius like its absolute value; it is rejected here)")
    return r


def gaussian_blur(x: torch.Tensor, radius, **_) -> torch.Tensor:
    """timm ``gaussian_blur``: ``img.filter(ImageFilter.GaussianBlur(radius))``, Pillow's approximation by three
    extended box blurs per direction (edge pixels replicated); radius 0 returns the image. ``radius`` is a number
    or a tensor ``[N]`` in [0, 1e6]; NaN/Inf and negative radii raise ValueError."""
    check_batch(x)
    return _run(x, "gaussian_blur", _blur_radius(radius, x.shape[0]))


def gaussian_blur_rand_radius(factor, u) -> torch.Tensor:
    """The radius timm's ``gaussian_blur_rand`` draws, ``random.uniform(0.1, 2.0 * factor)``, for uniforms ``u`` in
    [0, 1) (Python's ``uniform(a, b) = a + (b - a) * random()``, the same float64 operations)."""
    f = torch.as_tensor(factor, dtype=torch.float64)
    return 0.1 + (2.0 * f - 0.1) * torch.as_tensor(u, dtype=torch.float64)


def gaussian_blur_rand(x: torch.Tensor, factor, generator: torch.Generator | None = None, **_) -> torch.Tensor:
    """timm ``gaussian_blur_rand``: GaussianBlur with a radius drawn per sample uniformly between 0.1 and
    ``2 * factor`` (timm's ``random.uniform(0.1, 2.0 * factor)``; here from ``generator``, a CPU
    ``torch.Generator``, default torch's global one). ``factor``: a number or a tensor ``[N]``, >= 0 (timm's
    level_to_arg gives [0, 1])."""
    check_batch(x)
    n = x.shape[0]
    f = _per_sample(factor, n, "factor")
    if bool((f < 0).any()):
        raise ValueError(f"factor: must be >= 0, got {f[f < 0][:4].tolist()}")
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return gaussian_blur(x, gaussian_blur_rand_radius(f, u))

