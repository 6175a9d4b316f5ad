"""The augment op family: ``etrain::augment_slot`` / ``etrain::augment_chain`` on uint8 batches (not differentiable).

The op codes and limits below are those of csrc/augment/augment.h (test_augment_ops.py parses the header and checks
that they agree). The C++ ``check_args`` validates shapes, dtypes and devices of real tensors; the fake kernels
state the same rules for fake tensors. Code ranges (op, interp, GaussianBlur radius) are checked by the CPU kernels;
the CUDA kernels cannot check them without a device sync, so :func:`check_codes` checks them here, on the CPU,
before the arguments are uploaded, with the CPU kernels' messages.

On CUDA the front end also computes ``present`` (one op-code bitmask per slot, from the host op codes) so that the
launcher skips the passes no sample needs, and uploads op/params/interp/fill as one pinned buffer (:func:`stage_args`).
"""

from __future__ import annotations

import math

import torch

from . import library  # noqa: F401  (registers torch.ops.etrain.*)

__all__ = ["OP_CODES", "INTERP_CODES", "NUM_PARAMS", "MAX_BLUR_RADIUS", "augment_slot", "augment_chain",
           "check_codes", "bad_blur_radii", "pack_args", "unpack_args", "present_masks", "stage_args"]

# csrc/augment/augment.h: enum OpCode, enum Interp, kNumParams, kMaxBlurRadius
OP_CODES = {
    "identity": 0, "affine": 1, "invert": 2, "posterize": 3, "solarize": 4, "solarize_add": 5, "brightness": 6,
    "contrast": 7, "color": 8, "sharpness": 9, "auto_contrast": 10, "equalize": 11, "gaussian_blur": 12,
}
INTERP_CODES = {"nearest": 0, "bilinear": 1, "bicubic": 2}
NUM_PARAMS = 6
MAX_BLUR_RADIUS = 1.0e6
_ALL_OPS = (1 << len(OP_CODES)) - 1  # kAllOps: every op-code bit


def _fake(name: str, chain: bool):
    def fake(x: torch.Tensor, op: torch.Tensor, params: torch.Tensor, interp: torch.Tensor, fill: torch.Tensor,
             present: list[int] | None = None):
        pre = f"{name}: "
        torch._check_value(x.dim() == 4, lambda: pre + f"expected an image batch of shape [N, C, H, W], got shape "
                           f"{list(x.shape)}")
        torch._check_value(x.dtype == torch.uint8, lambda: pre + f"expected a uint8 batch, got dtype {x.dtype}")
        n, c = x.shape[0], x.shape[1]
        torch._check_value(c == 1 or c == 3, lambda: pre + f"expected 1 or 3 channels, got shape {list(x.shape)}")
        if chain:
            torch._check_value(op.dim() == 2, lambda: pre + f"op must have shape [N, L], got {list(op.shape)}")
        lead = [n, op.shape[1]] if chain else [n]
        for t, what, dtype, shape in ((op, "op", torch.int64, lead), (params, "params", torch.float64, lead + [NUM_PARAMS]),
                                      (interp, "interp", torch.int64, lead), (fill, "fill", torch.uint8, [n, c])):
            torch._check_value(t.dtype == dtype, lambda: pre + f"{what} must have dtype {dtype}, got {t.dtype}")
            torch._check_value(list(t.shape) == shape, lambda: pre + f"{what} must have shape {shape}, got "
                               f"{list(t.shape)}")
            torch._check_value(t.device == x.device, lambda: pre + f"{what} must be on the batch's device")
        if present is not None:
            torch._check_value(len(present) == lead[-1] if chain else len(present) == 1,
                               lambda: pre + "present must have one op-code bitmask per slot")
            for m in present:
                torch._check_value(0 <= m <= _ALL_OPS, lambda: pre + f"present masks must be in [0, {_ALL_OPS}]")
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    return fake


torch.library.register_fake("etrain::augment_slot")(_fake("augment_slot", chain=False))
torch.library.register_fake("etrain::augment_chain")(_fake("augment_chain", chain=True))


def bad_blur_radii(r: torch.Tensor) -> torch.Tensor:
    """Radii outside [0, MAX_BLUR_RADIUS] (NaN included): what the CPU kernel rejects and the CUDA one skips."""
    return ~((r >= 0) & (r <= MAX_BLUR_RADIUS))


def check_codes(name: str, op: torch.Tensor, params: torch.Tensor, interp: torch.Tensor) -> None:
    """The CPU kernels' code checks, for arguments still on the CPU (no device sync): op codes, interp codes and
    GaussianBlur radii. Tensors already on the GPU are not checked."""
    if op.device.type == "cpu" and op.numel() and bool(((op < 0) | (op >= len(OP_CODES))).any()):
        raise ValueError(f"{name}: op codes must be in [0, {len(OP_CODES)}), got {op.min().item()}..{op.max().item()}")
    if interp.device.type == "cpu" and interp.numel():
        i = interp.to(torch.int64)
        bad = (i < 0) | (i > 2)
        if bool(bad.any()):
            raise ValueError(f"{name}: interp codes must be 0 (nearest), 1 (bilinear) or 2 (bicubic), got "
                             f"{i[bad][:4].tolist()}")
    if (op.device.type == "cpu" and params.device.type == "cpu" and op.numel()
            and tuple(params.shape) == (*op.shape, NUM_PARAMS)):
        blur = op == OP_CODES["gaussian_blur"]
        if bool(blur.any()):
            r = params[..., 0][blur].to(torch.float64)
            bad = bad_blur_radii(r)
            if bool(bad.any()):
                raise ValueError(f"{name}: GaussianBlur radius (params[..., 0]) must be in [0, 1e6], got "
                                 f"{r[bad][:4].tolist()}")


def _check_batch(x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor batch, got {type(x).__name__}")


def pack_args(tensors: list[torch.Tensor], pin: bool) -> tuple[torch.Tensor, list[tuple]]:
    """The tensors' bytes, one after another, in one uint8 buffer (pinned when ``pin``), and the (offset, dtype,
    shape) to read each back (unpack_args). Each part starts at a multiple of 8 bytes, so views as int64/float64
    stay aligned."""
    parts, layout, offset = [], [], 0
    for t in tensors:
        raw = t.contiguous().reshape(-1).view(torch.uint8)
        layout.append((offset, t.dtype, tuple(t.shape)))
        parts.append(raw)
        offset += raw.numel()
        if offset % 8:
            parts.append(torch.zeros(8 - offset % 8, dtype=torch.uint8))
            offset += 8 - offset % 8
    buf = torch.empty(offset, dtype=torch.uint8, pin_memory=pin)
    if parts:
        torch.cat(parts, out=buf)
    return buf, layout


def unpack_args(buf: torch.Tensor, layout: list[tuple]) -> list[torch.Tensor]:
    """Views of ``buf`` (on any device) as the tensors that pack_args packed."""
    out = []
    for offset, dtype, shape in layout:
        n = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        out.append(buf[offset:offset + n].view(dtype).view(shape))
    return out


def present_masks(op: torch.Tensor) -> list[int]:
    """One bitmask per slot of the op codes that occur in it (bit k = code k), from CPU op codes [N] or [N, L] that
    are already range-checked: the ``present`` argument of the ops."""
    ops = op if op.dim() == 2 else op.unsqueeze(1)
    n, slots = ops.shape
    if n == 0:
        return [0] * slots
    k = len(OP_CODES)
    seen = torch.bincount((ops + torch.arange(slots) * k).reshape(-1), minlength=slots * k).reshape(slots, k) > 0
    return (seen.to(torch.int64) << torch.arange(k)).sum(1).tolist()


def stage_args(x: torch.Tensor, op: torch.Tensor, params: torch.Tensor, interp: torch.Tensor, fill: torch.Tensor):
    """op, params, interp and fill converted to the kernels' dtypes and moved to x's device. Host tensors bound for
    another device travel as one buffer in a single copy, pinned (and so truly asynchronous) on CUDA: a non_blocking
    copy from pageable memory is a synchronous staged copy in disguise, and four small copies cost four. On the CPU
    nothing is staged (the tensors are converted in place, a no-op when the dtype is right)."""
    args = [op.to(torch.int64), params.to(torch.float64), interp.to(torch.int64), fill.to(torch.uint8)]
    dev = x.device
    host = [i for i, t in enumerate(args) if t.device != dev and t.device.type == "cpu"]
    if host:
        pin = dev.type == "cuda"
        buf, layout = pack_args([args[i] for i in host], pin=pin)
        for i, t in zip(host, unpack_args(buf.to(dev, non_blocking=pin), layout)):
            args[i] = t
    return [t.to(dev) for t in args]


def _call(name: str, x: torch.Tensor, op: torch.Tensor, params: torch.Tensor, interp: torch.Tensor,
          fill: torch.Tensor) -> torch.Tensor:
    _check_batch(x)
    present = None
    if x.device.type == "cuda":
        check_codes(name, op, params, interp)  # the CPU kernels check the codes themselves
        if op.device.type == "cpu" and op.dim() == (2 if name == "augment_chain" else 1):  # else check_args raises
            present = present_masks(op.to(torch.int64))
    return getattr(torch.ops.etrain, name)(x, *stage_args(x, op, params, interp, fill), present)


def augment_slot(x: torch.Tensor, op: torch.Tensor, params: torch.Tensor, interp: torch.Tensor,
                 fill: torch.Tensor) -> torch.Tensor:
    """One op slot: sample i gets op code ``op[i]`` with ``params[i]`` (float64 [N, 6]), ``interp[i]`` and fill colour
    ``fill[i]`` (uint8 [N, C]). Arguments on the CPU are moved to x's device."""
    return _call("augment_slot", x, op, params, interp, fill)


def augment_chain(x: torch.Tensor, op: torch.Tensor, params: torch.Tensor, interp: torch.Tensor,
                  fill: torch.Tensor) -> torch.Tensor:
    """L slots in sequence (op, interp int64 [N, L]; params float64 [N, L, 6]; fill uint8 [N, C])."""
    return _call("augment_chain", x, op, params, interp, fill)
