"""efficienttrain_ext: EfficientTrain / EfficientTrain++ curriculum learning as a PyTorch C++/CUDA extension.

Layers, each importing only the ones before it: ``ops`` (the compiled operators) <- ``augment`` (batched
RandAugment) <- ``curriculum`` (schedules, sizes, FLOPs, replay, search) <- ``engine`` (trainer, batch pipeline,
stage plan, checkpoints, reports) <- ``cli``; ``data`` (datasets, host transforms) feeds the engine, and
``config`` / ``errors`` are shared. See docs/architecture.md.
"""

from .ops import built_with_cuda, lowfreq_crop, lowfreq_pad, lowpass

__version__ = "0.1.0"
__all__ = ["lowfreq_crop", "lowfreq_pad", "lowpass", "built_with_cuda", "__version__"]
