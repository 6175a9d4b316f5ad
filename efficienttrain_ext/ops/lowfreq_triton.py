"""The low-frequency crop and pad as one fused Triton kernel (the CUDA backend ``triton``).

Both ops are ``out = L @ x @ M^T - (g_h^T x g_w) * e_h e_w^T`` per plane (lowfreq.h has the derivation):

* crop: ``L = R_h`` [bh, H], ``M = R_w`` [bw, W] (the DFT restricted to the kept band), ``g = v`` (the sine of the
  unpaired Nyquist frequency of an even band), ``e`` = alternating signs;
* pad (the adjoint): ``L = R_h^T``, ``M = R_w^T``, ``g`` = alternating signs, ``e = v``.

One program computes all output rows (up to 256, as two accumulators of BM + BM2 rows, e.g. 128 + 32 for 160) of a
BN-column tile of one output plane: it streams the input plane through in [BK, BQ] tiles, ``t = x_k @ M^T`` (once
per program: not per row tile) then ``acc += L_k @ t`` on tensor cores (``tl.dot``), and folds the rank-one Nyquist
term in from the same tiles (``x_k @ g_w``, exact fp32, no second pass). The grid is plane-major (the programs of
one plane are consecutive, so they run side by side and share the plane through L2), and each output element is
written once, in the input's dtype. Accumulation is fp32; fp32 inputs use ``input_precision`` ieee / tf32x3 / tf32
following ``torch.get_float32_matmul_precision()`` (highest / high / medium); bf16 inputs run in tf32 and fp16
inputs in tf32x3 (see precision()).

``TRITON_INTERPRET=1`` (set before triton is imported) runs the same kernel on CPU tensors: the CI tests do that.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
import dataclasses
from dataclasses import dataclass

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # torch without triton (CPU wheels on some platforms): only the cuBLAS backend
    triton = None

__all__ = ["available", "interpreted", "precision", "TileConfig", "TILES_ENV", "parse_tiles", "config_for", "crop",
           "pad", "BandCache"]

_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def available() -> bool:
    """Whether triton imports (the kernel itself still needs CUDA tensors, or ``TRITON_INTERPRET=1``)."""
    return triton is not None


def interpreted() -> bool:
    """Whether triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1`` when triton was imported)."""
    return triton is not None and os.environ.get("TRITON_INTERPRET", "0") == "1"


def supports(t: torch.Tensor) -> bool:
    """Whether the kernel takes this tensor: fp32/fp16/bf16 (fp64 stays on the cuBLAS path: no fp64 tensor cores)."""
    return t.dtype in _KERNEL_DTYPES


# ---------------------------------------------------------------------------------------------------------- bands


def band_vectors(n: int, b: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(R [b, n], v [n]) in float64 on ``device``, built there with tensor ops (no host copy, capturable).

    R[r, p] = (1/n) sum_f cos(2 pi f (r/b - p/n)) over the kept frequencies (a Dirichlet kernel, reduced to one period
    in integers as csrc/lowfreq/lowfreq_common.cpp does); v[p] = sin(pi b p / n) / n, the unpaired Nyquist sine."""
    r = torch.arange(b, device=device, dtype=torch.int64)[:, None]
    p = torch.arange(n, device=device, dtype=torch.int64)[None, :]
    num = torch.remainder(r * n - p * b, b * n)
    t = num.to(torch.float64) / float(b * n)
    f_sum = (-(b // 2)) + ((b + 1) // 2 - 1)  # f_lo + f_hi: 0 for odd b, -1 for even b
    dirichlet = torch.sin(math.pi * b * t) * torch.cos(math.pi * f_sum * t) / torch.sin(math.pi * t)
    R = torch.where(num == 0, torch.full_like(t, float(b)), dirichlet) / n
    q = torch.arange(n, device=device, dtype=torch.int64)
    v = torch.sin(math.pi * torch.remainder(b * q, 2 * n).to(torch.float64) / n) / n
    return R, v


def _alternating(n: int, device: torch.device) -> torch.Tensor:
    return 1.0 - 2.0 * (torch.arange(n, device=device, dtype=torch.int64) % 2).to(torch.float64)


@dataclass(frozen=True)
class _Bands:
    R_h: torch.Tensor  # [bh, H] fp32
    R_w: torch.Tensor  # [bw, W]
    v_h: torch.Tensor  # [H]
    v_w: torch.Tensor  # [W]
    a_h: torch.Tensor  # [bh] alternating signs
    a_w: torch.Tensor  # [bw]
    stream: int = 0  # the CUDA stream they were built on (set by BandCache), for record_stream on others
    ready: object = None  # CUDA: a torch.cuda.Event recorded on that stream after the build

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.R_h, self.R_w, self.v_h, self.v_w, self.a_h, self.a_w


def _build_bands(H: int, W: int, bh: int, bw: int, device: torch.device) -> _Bands:
    R_h, v_h = band_vectors(H, bh, device)
    R_w, v_w = band_vectors(W, bw, device)
    f32 = torch.float32
    return _Bands(R_h.to(f32), R_w.to(f32), v_h.to(f32), v_w.to(f32), _alternating(bh, device).to(f32),
                  _alternating(bw, device).to(f32))


def _capturing(t: torch.Tensor) -> bool:
    """Whether t's device's current stream is being captured into a CUDA graph."""
    return t.is_cuda and torch.cuda.is_current_stream_capturing()


class BandCache:
    """Band matrices per (H, W, bh, bw, device), built on the device and reused; bounded, least recently used out.

    * CUDA graphs: while the current stream is being captured every call is a miss. The matrices are built inside
      the graph (recomputed at every replay, a few thousand elements) and not cached, since the graph's private pool
      may hand that memory to someone else later; and no cached entry goes into the graph, since a later eviction
      would free memory the graph keeps reading.
    * Streams: an entry records an event on its building stream after the build. A hit on another stream waits on
      it (so it never reads a matrix whose build has not run yet) and is ``record_stream``-ed there (so evicting it
      cannot free memory that stream still reads). Two threads that build the same key keep the first entry; the
      other thread uses it through the same wait.
    * Threads: the dictionary is guarded by a lock (the LRU reordering of a hit mutates it too).
    * Tracing (torch.compile, fake tensors): nothing is cached, the construction is traced into the graph."""

    def __init__(self, capacity: int = 64):
        self.capacity = capacity
        self._entries: OrderedDict[tuple, _Bands] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, t: torch.Tensor, H: int, W: int, bh: int, bw: int) -> _Bands:
        if type(t) is not torch.Tensor or torch.compiler.is_compiling() or _capturing(t):
            return _build_bands(H, W, bh, bw, t.device)
        key = (H, W, bh, bw, t.device)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
        if hit is not None:
            return self._use(hit, t)
        bands = _build_bands(H, W, bh, bw, t.device)  # outside the lock: device work
        if t.is_cuda:
            stream = torch.cuda.current_stream(t.device)
            ready = torch.cuda.Event()
            ready.record(stream)
            bands = dataclasses.replace(bands, stream=stream.cuda_stream, ready=ready)
        with self._lock:
            kept = self._entries.setdefault(key, bands)  # another thread may have inserted it meanwhile
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return self._use(kept, t) if kept is not bands else bands

    @staticmethod
    def _use(entry: _Bands, t: torch.Tensor) -> _Bands:
        if t.is_cuda:
            stream = torch.cuda.current_stream(t.device)
            if stream.cuda_stream != entry.stream:
                if entry.ready is not None:
                    stream.wait_event(entry.ready)
                for m in entry.tensors():
                    m.record_stream(stream)
        return entry

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


# --------------------------------------------------------------------------------------------------------- kernel


@dataclass(frozen=True)
class TileConfig:
    """Tile sizes (powers of two, >= 16 for tl.dot) and warps of one program. A program covers BM + BM2 output rows
    (two accumulators, BM2 = 0 for one): 160 rows as 128 + 32 instead of 256 padded."""

    BM: int = 64
    BN: int = 64
    BK: int = 32
    BQ: int = 32
    num_warps: int = 4
    num_stages: int = 2
    BM2: int = 0


def _pow2(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, 1 << max(0, (n - 1).bit_length())))


TILES_ENV = "ETRAIN_TRITON_TILES"


def parse_tiles(spec: str) -> TileConfig:
    """``"BM[+BM2],BN,BK,BQ[,num_warps[,num_stages]]"`` -> TileConfig. Tiles must be powers of two in [16, 256]
    (tl.dot needs >= 16 on every side), warps a power of two in [1, 32], stages in [1, 8]."""
    parts = [p.strip() for p in spec.split(",")]
    first = parts[0].split("+", 1) if parts else []
    try:
        vals = [int(p) for p in [first[0], *parts[1:]]] if first else []
        bm2 = int(first[1]) if len(first) > 1 else 0
    except ValueError:
        vals = []
    if not 4 <= len(vals) <= 6:
        raise ValueError(f"{TILES_ENV} must be BM[+BM2],BN,BK,BQ[,num_warps[,num_stages]] (integers), got {spec!r}")
    names = ("BM", "BN", "BK", "BQ", "BM2")
    for name, v in zip(names, [*vals[:4], *([bm2] if bm2 else [])]):
        if not (16 <= v <= 256 and v & (v - 1) == 0):
            raise ValueError(f"{TILES_ENV}: {name} must be a power of two in [16, 256], got {v} (from {spec!r})")
    cfg = TileConfig(*vals[:4], num_warps=8 if vals[0] + bm2 >= 128 else 4, num_stages=3, BM2=bm2)
    if len(vals) > 4:
        w = vals[4]
        if not (1 <= w <= 32 and w & (w - 1) == 0):
            raise ValueError(f"{TILES_ENV}: num_warps must be a power of two in [1, 32], got {w} (from {spec!r})")
        cfg = dataclasses.replace(cfg, num_warps=w)
    if len(vals) > 5:
        if not 1 <= vals[5] <= 8:
            raise ValueError(f"{TILES_ENV}: num_stages must be in [1, 8], got {vals[5]} (from {spec!r})")
        cfg = dataclasses.replace(cfg, num_stages=vals[5])
    return cfg


def config_for(Mo: int, No: int, Mi: int, Ni: int) -> TileConfig:
    """Tiles for an [Mo, No] output from an [Mi, Ni] input: ``ETRAIN_TRITON_TILES`` when set (parse_tiles; the tiling
    tests force small tiles with it so that every loop runs several times). Otherwise one program covers all output
    rows up to 256 (BM + BM2, e.g. 160 = 128 + 32), so ``x @ M^T`` is computed once per plane and column tile;
    columns in tiles of up to 64, input tiles of up to 64 x 32 (the fastest input tiles of scripts/bench_gpu.py
    --sweep on an H200 for the previous, row-tiled kernel; the new one is not yet measured)."""
    forced = os.environ.get(TILES_ENV, "").strip()
    if forced:
        return parse_tiles(forced)
    BM = min(128, max(16, 1 << max(0, Mo.bit_length() - 1)))  # the largest power of two <= Mo (16..128)
    rest = Mo - BM
    BM2 = 0 if rest <= 0 else min(BM, _pow2(rest, 16, 128))
    return TileConfig(BM=BM, BN=_pow2(No, 16, 64), BK=_pow2(Mi, 16, 64), BQ=_pow2(Ni, 16, 32),
                      num_warps=8 if BM + BM2 >= 128 else 4, num_stages=3, BM2=BM2)


def precision(dtype: torch.dtype = torch.float32) -> str:
    """tl.dot input precision. fp32 follows torch's float32 matmul precision, as torch.matmul does on CUDA
    (highest / high / medium -> ieee / tf32x3 / tf32). bf16 inputs are exact in TF32 and their output tolerance
    (2^-8) is far above TF32's rounding of the band matrices: tf32. fp16 has one mantissa bit more than TF32 keeps
    of the band matrices: tf32x3 (fp32-level accuracy)."""
    if dtype == torch.bfloat16:
        return "tf32"
    if dtype == torch.float16:
        return "tf32x3"
    return {"highest": "ieee", "high": "tf32x3", "medium": "tf32"}[torch.get_float32_matmul_precision()]


if triton is not None:

    @triton.jit
    def _separable_kernel(
        x_ptr, out_ptr, L_ptr, M_ptr, gh_ptr, gw_ptr, eh_ptr, ew_ptr,
        Mi, Ni, Mo, No, n_ct, n_rg,
        sxp, sxh, sxw,  # input strides: plane, row, column (elements)
        sl0, sl1, sm0, sm1,  # L [Mo, Mi] and M [No, Ni] strides
        CORR: tl.constexpr, PREC: tl.constexpr,
        BM: tl.constexpr, BM2: tl.constexpr, HAS2: tl.constexpr, RG: tl.constexpr, BN: tl.constexpr,
        BK: tl.constexpr, BQ: tl.constexpr,
    ):
        # Plane-major 1-D grid: the n_rg * n_ct programs of one plane are consecutive, so they run side by side and
        # share the plane through L2. A program covers BM (+ BM2) output rows, usually all of them (n_rg = 1).
        pid = tl.program_id(0).to(tl.int64)
        per_plane = n_ct * n_rg
        plane = pid // per_plane
        rest = pid % per_plane
        rg = rest // n_ct
        ct = rest % n_ct
        r0 = rg * RG  # RG = BM + BM2 rows per program (BM2 is a dummy 16 when HAS2 is off)
        rm = r0 + tl.arange(0, BM)
        rm2 = r0 + BM + tl.arange(0, BM2)
        rn = ct * BN + tl.arange(0, BN)
        x_plane = x_ptr + plane * sxp
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        acc2 = tl.zeros((BM2, BN), dtype=tl.float32)
        corner = tl.zeros((BK,), dtype=tl.float32)  # per input row k: g_h[k] * (x[k, :] @ g_w)
        for k0 in range(0, Mi, BK):
            rk = k0 + tl.arange(0, BK)
            # t = x[rows k] @ M^T[:, this column tile]: once per program, used for all of its output rows
            t = tl.zeros((BK, BN), dtype=tl.float32)
            xg = tl.zeros((BK,), dtype=tl.float32)
            for q0 in range(0, Ni, BQ):
                rq = q0 + tl.arange(0, BQ)
                x = tl.load(x_plane + rk[:, None].to(tl.int64) * sxh + rq[None, :].to(tl.int64) * sxw,
                            mask=(rk[:, None] < Mi) & (rq[None, :] < Ni), other=0.0).to(tl.float32)
                mt = tl.load(M_ptr + rn[None, :] * sm0 + rq[:, None] * sm1,
                             mask=(rn[None, :] < No) & (rq[:, None] < Ni), other=0.0)  # [BQ, BN] = M^T tile
                t = tl.dot(x, mt, t, input_precision=PREC)
                if CORR:
                    gw = tl.load(gw_ptr + rq, mask=rq < Ni, other=0.0)
                    xg += tl.sum(x * gw[None, :], axis=1)
            lk = tl.load(L_ptr + rm[:, None] * sl0 + rk[None, :] * sl1,
                         mask=(rm[:, None] < Mo) & (rk[None, :] < Mi), other=0.0)  # [BM, BK]
            acc = tl.dot(lk, t, acc, input_precision=PREC)
            if HAS2:
                lk2 = tl.load(L_ptr + rm2[:, None] * sl0 + rk[None, :] * sl1,
                              mask=(rm2[:, None] < Mo) & (rk[None, :] < Mi), other=0.0)
                acc2 = tl.dot(lk2, t, acc2, input_precision=PREC)
            if CORR:
                corner += xg * tl.load(gh_ptr + rk, mask=rk < Mi, other=0.0)
        out_plane = out_ptr + plane * Mo * No
        ew = tl.load(ew_ptr + rn, mask=rn < No, other=0.0)
        c = tl.sum(corner, axis=0)  # zero without the correction
        if CORR:
            eh = tl.load(eh_ptr + rm, mask=rm < Mo, other=0.0)
            acc -= c * (eh[:, None] * ew[None, :])
        tl.store(out_plane + rm[:, None] * No + rn[None, :], acc.to(out_ptr.dtype.element_ty),
                 mask=(rm[:, None] < Mo) & (rn[None, :] < No))
        if HAS2:
            if CORR:
                eh2 = tl.load(eh_ptr + rm2, mask=rm2 < Mo, other=0.0)
                acc2 -= c * (eh2[:, None] * ew[None, :])
            tl.store(out_plane + rm2[:, None] * No + rn[None, :], acc2.to(out_ptr.dtype.element_ty),
                     mask=(rm2[:, None] < Mo) & (rn[None, :] < No))


def _launch(inp: torch.Tensor, out_hw: tuple[int, int], L: torch.Tensor, M: torch.Tensor, g_h, g_w, e_h, e_w,
            correction: bool, config: TileConfig | None, launcher) -> torch.Tensor:
    Mi, Ni = inp.shape[-2], inp.shape[-1]
    Mo, No = out_hw
    planes = inp.reshape(-1, Mi, Ni)  # a view whenever the leading dimensions collapse (strides kept), else a copy
    out = torch.empty((*inp.shape[:-2], Mo, No), dtype=inp.dtype, device=inp.device)
    P = planes.shape[0]
    if P == 0 or Mo == 0 or No == 0:
        return out
    cfg = config or config_for(Mo, No, Mi, Ni)
    n_ct, n_rg = triton.cdiv(No, cfg.BN), triton.cdiv(Mo, cfg.BM + cfg.BM2)
    has2 = cfg.BM2 > 0
    grid = (P * n_ct * n_rg,)
    launcher(_separable_kernel)[grid](
        planes, out, L, M, g_h, g_w, e_h, e_w, Mi, Ni, Mo, No, n_ct, n_rg,
        planes.stride(0), planes.stride(1), planes.stride(2), L.stride(0), L.stride(1), M.stride(0), M.stride(1),
        CORR=correction, PREC=precision(inp.dtype), BM=cfg.BM, BM2=cfg.BM2 if has2 else 16, HAS2=has2,
        RG=cfg.BM + cfg.BM2, BN=cfg.BN, BK=cfg.BK, BQ=cfg.BQ, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return out


def _needs_correction(H: int, bh: int, W: int, bw: int) -> bool:
    # as csrc/lowfreq/lowfreq_common.cpp needs_correction: an even band below full size on both axes
    return bh % 2 == 0 and bw % 2 == 0 and bh < H and bw < W


def _direct(kernel):
    return kernel


def crop(x: torch.Tensor, size: Sequence[int], cache: BandCache, config: TileConfig | None = None,
         launcher=_direct) -> torch.Tensor:
    """lowfreq_crop by the fused kernel. Arguments must already be checked (ops/lowfreq.py does)."""
    H, W = x.shape[-2], x.shape[-1]
    bh, bw = int(size[0]), int(size[1])
    b = cache.get(x, H, W, bh, bw)
    return _launch(x, (bh, bw), b.R_h, b.R_w, b.v_h, b.v_w, b.a_h, b.a_w, _needs_correction(H, bh, W, bw), config,
                   launcher)


def pad(y: torch.Tensor, size: Sequence[int], cache: BandCache, config: TileConfig | None = None,
        launcher=_direct) -> torch.Tensor:
    """lowfreq_pad (the adjoint) by the same kernel, with the band matrices transposed."""
    bh, bw = y.shape[-2], y.shape[-1]
    H, W = int(size[0]), int(size[1])
    b = cache.get(y, H, W, bh, bw)
    return _launch(y, (H, W), b.R_h.t(), b.R_w.t(), b.a_h, b.a_w, b.v_h, b.v_w, _needs_correction(H, bh, W, bw),
                   config, launcher)
