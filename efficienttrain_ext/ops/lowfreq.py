"""The low-frequency op family: ``etrain::lowfreq_crop`` / ``etrain::lowfreq_pad`` wrappers, fake kernels, autograd.

``lowfreq_crop(x, size)`` keeps exactly the centred ``size`` block of the 2-D spectrum of every [H, W] plane of
``x`` and returns it as a smaller image (EfficientTrain's low-frequency cropping); ``lowfreq_pad`` is its exact
adjoint and ``lowpass`` the ideal low-pass filter at full resolution. All three are linear, differentiable to
any order, and traceable by ``torch.compile(fullgraph=True)`` and ``torch.export``.

Backends on CUDA (``ETRAIN_LOWFREQ_BACKEND``, read at every call; :func:`lowfreq_backend` reports the choice):
``cublas`` (the default), the C++ GEMM form (two cuBLAS GEMMs and a correction kernel, also reachable as
``etrain::lowfreq_crop_gemm``); ``triton``, the fused single-pass kernel of :mod:`.lowfreq_triton`, registered as
the CUDA kernel of ``etrain::lowfreq_crop`` / ``lowfreq_pad`` when triton imports and, for torch.compile to trace
into it, as the ``triton_op`` ``etrain::lowfreq_crop_triton`` / ``lowfreq_pad_triton`` that the wrappers below
call. cuBLAS is the default because it measured faster on an H200 (docs/performance.md: 0.84 vs 3.2-6.9 ms in
exact fp32, 0.32 vs 0.58 ms in TF32 at 256x3x224^2 -> 160). float64 always takes the GEMM form. The CPU always
runs the C++ kernels.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import torch

from . import library  # noqa: F401  (registers torch.ops.etrain.*)
from . import lowfreq_triton as _triton

__all__ = ["lowfreq_crop", "lowfreq_pad", "lowpass", "lowfreq_backend", "LOWFREQ_BACKENDS"]

LOWFREQ_BACKENDS = ("cublas", "triton")

_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _pair(size: int | Sequence[int], name: str) -> list[int]:
    if isinstance(size, bool):
        raise TypeError(f"{name}: size must be an int or a pair of ints, got {size!r}")
    if isinstance(size, int) or isinstance(size, torch.SymInt):
        return [size, size]
    if isinstance(size, Sequence) and len(size) == 2 and all(
        isinstance(s, (int, torch.SymInt)) and not isinstance(s, bool) for s in size
    ):
        return [size[0], size[1]]
    raise TypeError(f"{name}: size must be an int or a pair of ints (h, w), got {size!r}")


def _check_tensor(t, op: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: expected a torch.Tensor, got {type(t).__name__}")


def _check(t: torch.Tensor, size: Sequence[int], op: str, crop: bool) -> None:
    """The rules of csrc/lowfreq/lowfreq_common.cpp ``check_args`` for fake tensors (torch.compile, export, meta),
    with its messages; real tensors are checked by the C++ op (test_lowfreq_ops.py checks that both agree)."""
    torch._check_value(t.dim() >= 2, lambda: f"{op}: expected a tensor of shape [..., H, W] with at least 2 dims, "
                       f"got shape {_dims(t.shape)}")
    torch._check_value(t.dtype in _FLOAT_DTYPES, lambda: f"{op}: expected a real floating dtype (float32, float64, "
                       f"float16 or bfloat16), got {_dtype_name(t.dtype)}")
    torch._check_value(len(size) == 2, lambda: f"{op}: size must have 2 entries (h, w), got {_dims(size)}")
    torch._check_value(size[0] >= 1 and size[1] >= 1, lambda: f"{op}: size entries must be >= 1, got {_dims(size)}")
    h, w = t.shape[-2], t.shape[-1]
    torch._check_value(h >= 1 and w >= 1, lambda: f"{op}: input spatial size must be >= 1, got {_dims(t.shape)}")
    if crop:
        torch._check_value(size[0] <= h and size[1] <= w, lambda: f"{op}: size {_dims(size)} must not exceed the "
                           f"input's (H, W) = {_dims((h, w))}")
    else:
        torch._check_value(size[0] >= h and size[1] >= w, lambda: f"{op}: size {_dims(size)} must be at least the "
                           f"input's (h, w) = {_dims((h, w))}")


def _dims(shape) -> str:
    return "[" + ", ".join(str(int(s)) if not isinstance(s, torch.SymInt) else str(s) for s in shape) + "]"


def _dtype_name(dtype: torch.dtype) -> str:
    # c10's ScalarType names, as the C++ messages print them
    return {torch.float16: "Half", torch.bfloat16: "BFloat16", torch.float32: "Float", torch.float64: "Double",
            torch.int64: "Long", torch.int32: "Int", torch.int16: "Short", torch.int8: "Char", torch.uint8: "Byte",
            torch.bool: "Bool", torch.complex64: "ComplexFloat", torch.complex128: "ComplexDouble"}.get(dtype, str(dtype))


def _crop_fake(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    _check(x, size, "lowfreq_crop", crop=True)
    return x.new_empty((*x.shape[:-2], size[0], size[1]))


def _pad_fake(y: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    _check(y, size, "lowfreq_pad", crop=False)
    return y.new_empty((*y.shape[:-2], size[0], size[1]))


for _name in ("lowfreq_crop", "lowfreq_crop_gemm"):
    torch.library.register_fake(f"etrain::{_name}", _crop_fake)
for _name in ("lowfreq_pad", "lowfreq_pad_gemm"):
    torch.library.register_fake(f"etrain::{_name}", _pad_fake)


def lowfreq_backend() -> str:
    """The CUDA backend of the low-frequency ops: ``ETRAIN_LOWFREQ_BACKEND`` (cublas | triton), by default cublas.
    Asking for triton without it raises."""
    choice = os.environ.get("ETRAIN_LOWFREQ_BACKEND", "")
    if choice == "":
        return "cublas"
    if choice not in LOWFREQ_BACKENDS:
        raise ValueError(f"ETRAIN_LOWFREQ_BACKEND must be one of {', '.join(LOWFREQ_BACKENDS)} (or unset), "
                         f"got {choice!r}")
    if choice == "triton" and not _triton.available():
        raise RuntimeError("ETRAIN_LOWFREQ_BACKEND=triton, but triton does not import; install triton or use cublas")
    return choice


def _triton_takes(t: torch.Tensor) -> bool:
    return t.is_cuda and _triton.supports(t) and lowfreq_backend() == "triton"


# The band matrices of the triton backend, per size and device (the GEMM form keeps its own in C++).
_TRITON_BANDS = _triton.BandCache()

if _triton.available():

    @torch.library.triton_op("etrain::lowfreq_crop_triton", mutates_args=())
    def _lowfreq_crop_triton(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        _check(x, size, "lowfreq_crop", crop=True)
        return _triton.crop(x, size, _TRITON_BANDS, launcher=torch.library.wrap_triton)

    @torch.library.triton_op("etrain::lowfreq_pad_triton", mutates_args=())
    def _lowfreq_pad_triton(y: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        _check(y, size, "lowfreq_pad", crop=False)
        return _triton.pad(y, size, _TRITON_BANDS, launcher=torch.library.wrap_triton)

    def _crop_cuda(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        if _triton_takes(x):
            _check(x, size, "lowfreq_crop", crop=True)
            return _triton.crop(x, size, _TRITON_BANDS)
        return torch.ops.etrain.lowfreq_crop_gemm(x, size)

    def _pad_cuda(y: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        if _triton_takes(y):
            _check(y, size, "lowfreq_pad", crop=False)
            return _triton.pad(y, size, _TRITON_BANDS)
        return torch.ops.etrain.lowfreq_pad_gemm(y, size)

    if library.built_with_cuda():
        # Replaces the C++ CUDA kernels (still reachable as the *_gemm ops); the dispatcher warns about the override.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="(?s).*Overriding a previously registered kernel")
            torch.library.register_kernel("etrain::lowfreq_crop", "cuda", _crop_cuda)
            torch.library.register_kernel("etrain::lowfreq_pad", "cuda", _pad_cuda)


def _keep_in_size(ctx, inputs, output) -> None:
    t, size = inputs
    ctx.in_size = [t.shape[-2], t.shape[-1]]


def _crop_backward(ctx, grad: torch.Tensor):
    # The op is linear: its backward is its adjoint, which is itself differentiable (double backward).
    return _pad(grad, ctx.in_size), None


def _pad_backward(ctx, grad: torch.Tensor):
    return _crop(grad, ctx.in_size), None


def _crop(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    # the triton_op on CUDA when it is the backend, so torch.compile traces into the kernel
    if _triton_takes(x):
        return torch.ops.etrain.lowfreq_crop_triton(x, size)
    return torch.ops.etrain.lowfreq_crop(x, size)


def _pad(y: torch.Tensor, size: list[int]) -> torch.Tensor:
    if _triton_takes(y):
        return torch.ops.etrain.lowfreq_pad_triton(y, size)
    return torch.ops.etrain.lowfreq_pad(y, size)


_SUFFIXES = ("", "_triton") if _triton.available() else ("",)
for _suffix in _SUFFIXES:
    torch.library.register_autograd(f"etrain::lowfreq_crop{_suffix}", _crop_backward, setup_context=_keep_in_size)
    torch.library.register_autograd(f"etrain::lowfreq_pad{_suffix}", _pad_backward, setup_context=_keep_in_size)


def lowfreq_crop(x: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Low-frequency crop of every [H, W] plane of ``x`` to ``size`` (int or (bh, bw)).

    Per plane: ``Re(ifft2(band(fft2(x)))) * (bh*bw)/(H*W)`` where the band keeps frequency rows
    ``0..ceil(bh/2)-1`` and ``-floor(bh/2)..-1`` (columns likewise). For even sizes this equals EfficientTrain's
    reference ``freq_crop``; the mean is kept and ``size == (H, W)`` returns ``x``. fp16/bf16 are computed in fp32.
    Output: ``[..., bh, bw]``, contiguous, same dtype and device.
    """
    _check_tensor(x, "lowfreq_crop")
    return _crop(x, _pair(size, "lowfreq_crop"))


def lowfreq_pad(y: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Exact adjoint of :func:`lowfreq_crop`: ``<lowfreq_crop(x, y.shape[-2:]), y> == <x, lowfreq_pad(y, x.shape[-2:])>``."""
    _check_tensor(y, "lowfreq_pad")
    return _pad(y, _pair(size, "lowfreq_pad"))


def _nyquist_sine(n: int, b: int, like: torch.Tensor) -> torch.Tensor:
    # Sine part of the unpaired Nyquist frequency -b/2 on an n-point axis (the rank-one term of the C++ kernels).
    p = torch.arange(n, dtype=torch.float64, device=like.device)
    return (torch.sin(torch.pi * b * p / n) / n).to(like.dtype)


def lowpass(x: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Ideal low-pass filter at full resolution: crop to ``size``, then spectral up-sampling back to H x W.

    The up-sampling zero-pads the crop's spectrum, splitting an even size's Nyquist bin evenly between +-b/2
    (as ``scipy.signal.resample`` does). For odd sizes this is ``Re(ifft2(band(fft2(x))))``. Differentiable.
    """
    _check_tensor(x, "lowpass")
    s = _pair(size, "lowpass")
    y = _crop(x, s)  # checks x and s
    h, w = x.shape[-2], x.shape[-1]
    up = _pad(y, [h, w])
    if s[0] % 2 == 0 and s[1] % 2 == 0 and s[0] < h and s[1] < w:
        # lowfreq_pad, the adjoint, subtracts the Nyquist sine product that band-limited interpolation lacks.
        sign_h = 1 - 2 * (torch.arange(s[0], device=x.device) % 2)
        sign_w = 1 - 2 * (torch.arange(s[1], device=x.device) % 2)
        alt = (sign_h[:, None] * sign_w[None, :]).to(y.dtype)
        corner = (y * alt).sum(dim=(-2, -1), keepdim=True)
        up = up + corner * (_nyquist_sine(h, s[0], up)[:, None] * _nyquist_sine(w, s[1], up)[None, :])
    return up * ((h * w) / (s[0] * s[1]))
