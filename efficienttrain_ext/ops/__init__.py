"""The compiled ``torch.ops.etrain`` operators: Python wrappers, fake (meta) kernels and autograd, one module per
op family (:mod:`.lowfreq`, :mod:`.augment`). Importing this package loads the shared library."""

from .augment import augment_chain, augment_slot
from .library import built_with_cuda
from .lowfreq import lowfreq_backend, lowfreq_crop, lowfreq_pad, lowpass

__all__ = ["lowfreq_crop", "lowfreq_pad", "lowpass", "lowfreq_backend", "augment_slot", "augment_chain", "built_with_cuda"]
