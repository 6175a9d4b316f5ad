"""The low-frequency crop and pad as one fused Triton kernel (the CUDA backend ``triton``).

Both ops are ``out = L @ x @ M^T - (g_h^T x g_w) * e_h e_w^T`` per plane (lowfreq.h has the derivation):

* crop: ``L = R_h`` [bh, H], ``M = R_w`` [bw, W] (the DFT restricted to the kept band), ``g = v`` (the sine of the
  unpaired Nyquist frequency of an even band), ``e`` = alternating signs;
* pad (the adjoint): ``L = R_h^T``, ``M = R_w^T``, ``g`` = alternating signs, ``e = v``.

One program computes a [BM, BN] tile of one output plane: it streams the input plane through in [BK, BQ] tiles,
``t = x_k @ M^T`` then ``acc += L_k @ t`` on tensor cores (``tl.dot``), and folds the rank-one Nyquist term in from
the same tiles (``x_k @ g_w``, exact fp32, no second pass). Each input element is read from memory by the
programs of its plane only (the [BM, BN] tiles of one plane run side by side and share it through L2), and each
output element is written once, in the input's dtype. Accumulation is fp32; fp32 inputs use
``input_precision`` ieee / tf32x3 / tf32 following ``torch.get_float32_matmul_precision()`` (highest / high /
medium), fp16/bf16 inputs are converted to fp32 on load and run as fp32 (they are exact in fp32; the band matrices
are not exact in 16 bits).

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


def precision() -> str:
    """tl.dot input precision for fp32 following torch's float32 matmul precision, as torch.matmul does on CUDA."""
    return {"highest": "ieee", "high": "tf32x3", "medium": "tf32"}[torch.get_float32_matmul_precision()]


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
    """Tile sizes (powers of two, >= 16 for tl.dot) and warps of one program."""

    BM: int = 64
    BN: int = 64
    BK: int = 32
    BQ: int = 32
    num_warps: int = 4
    num_stages: int = 2


def _pow2(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, 1 << max(0, (n - 1).bit_length())))


TILES_ENV = "ETRAIN_TRITON_TILES"


def parse_tiles(spec: str) -> TileConfig:
    """``"BM,BN,BK,BQ[,num_warps[,num_stages]]"`` -> TileConfig. Tiles must be powers of two in [16, 256] (tl.dot
    needs >= 16 on every side), warps a power of two in [1, 32], stages in [1, 8]."""
    parts = [p.strip() for p in spec.split(",")]
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = []
    if not 4 <= len(vals) <= 6 or len(vals) != len(parts):
        raise ValueError(f"{TILES_ENV} must be BM,BN,BK,BQ[,num_warps[,num_stages]] (integers), got {spec!r}")
    names = ("BM", "BN", "BK", "BQ")
    for name, v in zip(names, vals[:4]):
        if not (16 <= v <= 256 and v & (v - 1) == 0):
            raise ValueError(f"{TILES_ENV}: {name} must be a power of two in [16, 256], got {v} (from {spec!r})")
    cfg = TileConfig(*vals[:4], num_warps=8 if vals[0] >= 128 else 4, num_stages=3)
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
    tests force small tiles with it so that every loop runs several times), else at most 128 x 64 output and 64 x 32
    input tiles, the fastest of scripts/bench_gpu.py --sweep in TF32 on an H200 (256x3x224^2 -> 160: 0.58 ms, vs 2.4
    ms for 64 x 64 x 32 x 32); smaller for small planes, so the interpreter and small images waste little on padding."""
    forced = os.environ.get(TILES_ENV, "").strip()
    if forced:
        return parse_tiles(forced)
    BM = _pow2(Mo, 16, 128)
    return TileConfig(BM=BM, BN=_pow2(No, 16, 64), BK=_pow2(Mi, 16, 64), BQ=_pow2(Ni, 16, 32),
                      num_warps=8 if BM >= 128 else 4, num_stages=3)


if triton is not None:

    @triton.jit
    def _separable_kernel(
        x_ptr, out_ptr, L_ptr, M_ptr, gh_ptr, gw_ptr, eh_ptr, ew_ptr,
        Mi, Ni, Mo, No,
        sxp, sxh, sxw,  # input strides: plane, row, column (elements)
        sl0, sl1, sm0, sm1,  # L [Mo, Mi] and M [No, Ni] strides
        CORR: tl.constexpr, PREC: tl.constexpr,
        BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, BQ: tl.constexpr,
    ):
        # planes on grid axis 0 (up to 2^31 - 1), output tiles on axes 1 and 2 (each well under 65535)
        plane = tl.program_id(0).to(tl.int64)
        rm = tl.program_id(1) * BM + tl.arange(0, BM)
        rn = tl.program_id(2) * BN + tl.arange(0, BN)
        x_plane = x_ptr + plane * sxp
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        corner = tl.zeros((BK,), dtype=tl.float32)  # per input row k: g_h[k] * (x[k, :] @ g_w)
        for k0 in range(0, Mi, BK):
            rk = k0 + tl.arange(0, BK)
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
            if CORR:
                corner += xg * tl.load(gh_ptr + rk, mask=rk < Mi, other=0.0)
        if CORR:
            c = tl.sum(corner, axis=0)
            eh = tl.load(eh_ptr + rm, mask=rm < Mo, other=0.0)
            ew = tl.load(ew_ptr + rn, mask=rn < No, other=0.0)
            acc -= c * (eh[:, None] * ew[None, :])
        out_plane = out_ptr + plane * Mo * No
        tl.store(out_plane + rm[:, None] * No + rn[None, :], acc.to(out_ptr.dtype.element_ty),
                 mask=(rm[:, None] < Mo) & (rn[None, :] < No))


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
    grid = (P, triton.cdiv(Mo, cfg.BM), triton.cdiv(No, cfg.BN))
    launcher(_separable_kernel)[grid](
        planes, out, L, M, g_h, g_w, e_h, e_w, Mi, Ni, Mo, No,
        planes.stride(0), planes.stride(1), planes.stride(2), L.stride(0), L.stride(1), M.stride(0), M.stride(1),
        CORR=correction, PREC=precision(), BM=cfg.BM, BN=cfg.BN, BK=cfg.BK, BQ=cfg.BQ,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages)
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
