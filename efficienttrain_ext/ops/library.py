"""Loads the compiled extension ``efficienttrain_ext._C``, whose static initialisers register ``torch.ops.etrain``."""

from __future__ import annotations

import torch

from .. import _C  # noqa: F401  (the import is the registration)

__all__ = ["built_with_cuda"]


def built_with_cuda() -> bool:
    """Whether the compiled library contains the CUDA kernels."""
    return bool(torch.ops.etrain.built_with_cuda())
