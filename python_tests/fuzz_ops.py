"""Random calls of every public op with random (often invalid) arguments; run by test_fuzz_ops.py in a subprocess.

Each call must either return a tensor of the right shape and dtype, or raise ValueError / TypeError / RuntimeError
with a non-empty message. Anything else (another exception type, a crash, a hang) is a failure. The generator is
seeded, so a failure names the family, call number and seed that reproduce it:

    python python_tests/fuzz_ops.py CALLS SEED [FAMILY ...]     # default: every family (FAMILIES)
"""

from __future__ import annotations

import math
import sys
import traceback

import torch

import efficienttrain_ext as et
import efficienttrain_ext.augment.functional as AF
from efficienttrain_ext.augment import RandAugment

ALLOWED = (ValueError, TypeError, RuntimeError)
DTYPES = [torch.uint8, torch.int32, torch.int64, torch.bool, torch.float16, torch.bfloat16, torch.float32,
          torch.float64, torch.complex64]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and et.built_with_cuda() else [])


class Rng:
    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)

    def int(self, lo: int, hi: int) -> int:  # inclusive
        return int(torch.randint(lo, hi + 1, (1,), generator=self.g))

    def float(self) -> float:
        return float(torch.rand((), generator=self.g, dtype=torch.float64))

    def choice(self, items):
        return items[self.int(0, len(items) - 1)]

    def chance(self, p: float) -> bool:
        return self.float() < p


def random_tensor(r: Rng, good_dtypes, dims=(0, 5), side=(0, 12), images=False) -> torch.Tensor:
    """A random tensor: random rank, sides (sometimes 0), dtype, layout (strided, transposed, expanded, offset), values
    with NaN/Inf for floating dtypes. Most are of a kind the op takes (``good_dtypes``, image batches), so that the
    ops' own paths run on odd shapes and layouts too; the rest are anything."""
    if images and r.chance(0.85):
        shape = [r.int(0, 5), r.choice([1, 3, 3, 3, 2]), r.int(1, side[1]), r.int(1, side[1])]
    elif not images and r.chance(0.85):
        shape = [r.int(0, 3) for _ in range(r.int(0, 2))] + [r.int(1, side[1]), r.int(1, side[1])]
    else:
        shape = [r.int(*side) if r.chance(0.9) else 0 for _ in range(r.int(*dims))]
    dtype = r.choice(good_dtypes) if r.chance(0.85) else r.choice(DTYPES)
    if dtype.is_floating_point or dtype.is_complex:
        x = torch.randn([s + 2 for s in shape] or [1], generator=r.g, dtype=torch.float64)
        if r.chance(0.2) and x.numel():
            x.view(-1)[r.int(0, x.numel() - 1)] = r.choice([math.nan, math.inf, -math.inf])
        x = x.to(dtype)
    elif dtype == torch.bool:
        x = torch.rand([s + 2 for s in shape] or [1], generator=r.g) > 0.5
    else:
        hi = 256 if dtype == torch.uint8 else 1000
        x = torch.randint(0, hi, [s + 2 for s in shape] or [1], generator=r.g, dtype=dtype)
    if not shape:
        return x.reshape(-1)[0]
    sl = tuple(slice(1, 1 + s) for s in shape)
    x = x[sl]  # an offset view
    layout = r.int(0, 3)
    if layout == 1 and x.dim() >= 2:
        x = x.transpose(-1, -2).contiguous().transpose(-1, -2)  # column-major planes, same shape
    elif layout == 2 and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == 3 and x.dim() >= 1 and x.shape[0] == 1:
        x = x.expand(r.int(1, 3), *x.shape[1:])
    elif r.chance(0.5):
        x = x.contiguous()
    return x.to(r.choice(DEVICES))


def random_size(r: Rng, h: int, w: int, grow: bool):
    kind = r.int(0, 9)
    if kind <= 5:  # mostly valid
        return (r.int(max(h, 1), h + 6), r.int(max(w, 1), w + 6)) if grow else (r.int(1, max(h, 1)), r.int(1, max(w, 1)))
    if kind == 6:
        return (r.int(-2, h + 3), r.int(-2, w + 3))
    if kind == 7:
        return r.int(-1, max(h, w) + 2)
    return r.choice([None, 2.5, "8", (4, 4, 4), [3], True, (2.0, 3), torch.tensor(4)])


def random_scalar(r: Rng):
    kind = r.int(0, 9)
    if kind <= 5:
        return r.float() * r.choice([1, 2, 10, 100]) if kind <= 3 else (r.float() * 4 - 1) * r.choice([1, 100, 1e7])
    return r.choice([math.nan, math.inf, -math.inf, None, "x", True, -0.0, 0])


def random_arg(r: Rng, n: int):
    """A per-sample argument: a scalar, a tensor [N] (sometimes the wrong length or dtype), or junk."""
    if r.chance(0.6):
        return random_scalar(r)
    m = n if r.chance(0.9) else r.int(0, n + 2)
    t = (torch.rand(m, generator=r.g, dtype=torch.float64) * 4 - 1) * r.choice([1, 30, 300])
    if r.chance(0.1) and m:
        t[0] = math.nan
    return t.to(r.choice([torch.float64, torch.float32, torch.int64]))


def _shape_ok(out, expect_shape, expect_dtype) -> None:
    assert isinstance(out, torch.Tensor), f"returned {type(out).__name__}"
    assert tuple(out.shape) == tuple(expect_shape), f"shape {tuple(out.shape)}, expected {tuple(expect_shape)}"
    assert out.dtype == expect_dtype, f"dtype {out.dtype}, expected {expect_dtype}"


def call_lowfreq(r: Rng) -> None:
    floats = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
    x = random_tensor(r, floats, side=(0, 10)) if r.chance(0.97) else r.choice([[1.0, 2.0], 3, None])
    h, w = (x.shape[-2], x.shape[-1]) if isinstance(x, torch.Tensor) and x.dim() >= 2 else (4, 4)
    op = r.choice(["crop", "pad", "lowpass"])
    if op == "pad":
        size = random_size(r, h, w, grow=True)
        out = et.lowfreq_pad(x, size)
    else:
        size = random_size(r, h, w, grow=False)
        out = (et.lowfreq_crop if op == "crop" else et.lowpass)(x, size)
    s = (size, size) if isinstance(size, int) else size
    _shape_ok(out, x.shape if op == "lowpass" else (*x.shape[:-2], *s), x.dtype)


FUNCTIONAL = {
    "auto_contrast": 0, "equalize": 0, "invert": 0, "rotate": 1, "posterize": 1, "solarize": 1, "solarize_add": 2,
    "color": 1, "contrast": 1, "brightness": 1, "sharpness": 1, "shear_x": 1, "shear_y": 1, "translate_x_rel": 1,
    "translate_y_rel": 1, "gaussian_blur": 1, "gaussian_blur_rand": 1,
}
GEOMETRIC = {"rotate", "shear_x", "shear_y", "translate_x_rel", "translate_y_rel"}


def call_functional(r: Rng, name: str) -> None:
    x = random_tensor(r, [torch.uint8], side=(0, 20), images=True) if r.chance(0.97) else r.choice([None, [[1]], 2.0])
    n = x.shape[0] if isinstance(x, torch.Tensor) and x.dim() >= 1 else 1
    args = [random_arg(r, n) for _ in range(FUNCTIONAL[name])]
    kwargs = {}
    if name in GEOMETRIC:
        if r.chance(0.5):
            kwargs["fillcolor"] = r.choice([None, 0, (1, 2, 3), (300, 0, 0), (), torch.randint(0, 256, (n, 3)),
                                            (-1,), "red"])
        if r.chance(0.5):
            kwargs["resample"] = r.choice(["nearest", "bilinear", "bicubic", "lanczos", 0, 2, 3, 5, None,
                                           torch.tensor([0, 2, 3] * n)[:n], torch.full((n,), 9)])
    if name == "gaussian_blur_rand" and r.chance(0.5):
        kwargs["generator"] = torch.Generator().manual_seed(r.int(0, 1000))
    out = getattr(AF, name)(x, *args, **kwargs)
    _shape_ok(out, x.shape, torch.uint8)


POLICIES = ["rand-m9-mstd0.5-inc1", "rand-m7-n3-p0.9", "rand-m10-n1-mstd101", "rand-m9-mstd0.5-t3aw", "rand-m5-tweights",
            "rand-m9-n0", "rand-m3-mmax5-mstd1", "rand-m9-t3a", "rand-m9-n4-p1.0"]
BAD_POLICIES = ["rand", "rand-q3", "randx-m9", "rand-m9-n-1", "rand-mx", "rand-m9-p2", "rand-m9-mstd-1", "rand-m9-tnope",
                7, None]
HPARAMS = [None, {}, {"img_mean": (124, 116, 104)}, {"translate_const": 10}, {"interpolation": "bilinear"}]
BAD_HPARAMS = [{"img_mean": (300,)}, {"nope": 1}, {"interpolation": "lanczos"}, {"magnitude_std": -1}]


def call_randaugment(r: Rng) -> None:
    policy = r.choice(POLICIES) if r.chance(0.9) else r.choice(BAD_POLICIES)
    hparams = r.choice(HPARAMS) if r.chance(0.9) else r.choice(BAD_HPARAMS)
    ra = RandAugment(policy, hparams, generator=torch.Generator().manual_seed(r.int(0, 9999)))
    if r.chance(0.5):
        ra.magnitude = r.float() * 10 if r.chance(0.8) else random_scalar(r)
    x = random_tensor(r, [torch.uint8], side=(0, 24), images=True)
    out = ra(x)
    _shape_ok(out, x.shape, torch.uint8)


def family_calls(family: str):
    if family == "lowfreq":
        return call_lowfreq
    if family == "randaugment":
        return call_randaugment
    if family.startswith("functional."):
        name = family.split(".", 1)[1]
        return lambda r: call_functional(r, name)
    raise SystemExit(f"unknown family {family!r}")


def run(family: str, calls: int, seed: int) -> list[str]:
    fn, r = family_calls(family), Rng(seed)
    failures = []
    outcomes = {"ok": 0, "error": 0}
    for i in range(calls):
        try:
            fn(r)
            outcomes["ok"] += 1
        except ALLOWED as e:
            if not str(e).strip():
                failures.append(f"{family} call {i} (seed {seed}): {type(e).__name__} with an empty message")
            outcomes["error"] += 1
        except AssertionError as e:
            failures.append(f"{family} call {i} (seed {seed}): wrong result: {e}")
        except Exception as e:  # noqa: BLE001 (any other exception type is a finding)
            failures.append(f"{family} call {i} (seed {seed}): {type(e).__name__}: {e}\n{traceback.format_exc()}")
    print(f"{family}: {calls} calls, {outcomes['ok']} returned, {outcomes['error']} raised a clear error, "
          f"{len(failures)} failures", flush=True)
    return failures


FAMILIES = ["lowfreq", "randaugment"] + [f"functional.{name}" for name in FUNCTIONAL]


def main(argv: list[str]) -> int:
    calls, seed, families = int(argv[0]), int(argv[1]), argv[2:] or FAMILIES
    failures = [f for family in families for f in run(family, calls, seed)]
    for f in failures[:20]:
        print(f, flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
