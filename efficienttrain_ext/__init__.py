"""efficienttrain_ext: EfficientTrain / EfficientTrain++ curriculum learning as a PyTorch C++/CUDA extension.

Layers, each importing only the ones before it: ``ops`` (the compiled operators) <- ``augment`` (batched
RandAugment) <- ``curriculum`` (schedules, sizes, FLOPs, replay, search) <- ``engine`` (trainer, batch pipeline,
stage plan, checkpoints, reports) <- ``cli``; ``data`` (datasets, host transforms) feeds the engine, and
``config`` / ``errors`` are shared. See docs/architecture.md.
"""

import torch

from .ops import built_with_cuda, lowfreq_backend, lowfreq_crop, lowfreq_pad, lowpass
from .ops import lowfreq_triton as _lowfreq_triton

__version__ = "0.1.0"
__all__ = ["lowfreq_crop", "lowfreq_pad", "lowpass", "built_with_cuda", "lowfreq_backend", "info", "__version__"]


def info() -> dict:
    """What this installation runs: versions, whether the CUDA kernels are built, the CUDA backend of the
    low-frequency ops (ETRAIN_LOWFREQ_BACKEND) and the fp32 matmul precision they follow."""
    triton = _lowfreq_triton.triton
    return {
        "efficienttrain_ext": __version__,
        "torch": torch.__version__,
        "built_with_cuda": built_with_cuda(),
        "cuda_available": torch.cuda.is_available(),
        "lowfreq_backend": lowfreq_backend(),
        "triton": triton.__version__ if triton is not None else None,
        "triton_interpreted": _lowfreq_triton.interpreted(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }
