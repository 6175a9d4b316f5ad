"""Batched, per-sample RandAugment (timm semantics) on uint8 image batches, CPU and CUDA.

``RandAugment`` is the policy (timm policy strings, settable magnitude, reproducible with a torch.Generator);
``functional`` holds one function per timm op; ``RandAugmentTransform`` is a per-image transform for DataLoader
workers; ``from_timm_string`` builds the policy from timm's ``--aa`` string; ``build_randaugment`` picks a backend
(``batched`` or timm's PIL ``timm``). See docs/augment.md.
"""

from . import functional
from .backends import build_randaugment, randaugment_hparams
from .policy import RandAugment, RandAugmentTransform, from_timm_string, parse_policy
from .timm_backend import TimmBatchRandAugment

__all__ = ["functional", "RandAugment", "RandAugmentTransform", "from_timm_string", "parse_policy",
           "TimmBatchRandAugment", "build_randaugment", "randaugment_hparams"]
