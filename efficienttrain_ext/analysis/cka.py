"""Linear centred kernel alignment (CKA, Kornblith et al. 2019) between the layer features of two models (the
paper's Fig. 6).

For features X [n, p] and Y [n, q] of the same n images, with column-centred Xc, Yc::

    CKA(X, Y) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)
              = <K, L>_F / (||K||_F ||L||_F),  K = Xc Xc^T, L = Yc Yc^T   (centred linear Gram matrices)

The Gram form is what is computed (n x n, whatever the feature width); it is invariant to orthogonal transforms and
isotropic scaling of either feature space, and 1 for identical representations.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import nn

__all__ = ["centered_gram", "cka_from_grams", "linear_cka", "default_layers", "layer_grams", "cka_matrix"]

OUTPUT = "output"  # the model's output (logits), as a layer name


def _features(x: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.is_complex():
        raise ValueError(f"{what}: expected a tensor [n, ...] of features, got {type(x).__name__}")
    if x.shape[0] < 2:
        raise ValueError(f"{what}: CKA needs at least 2 examples, got {x.shape[0]}")
    return x.reshape(x.shape[0], -1).to(torch.float64)


def centered_gram(x: torch.Tensor) -> torch.Tensor:
    """Linear Gram matrix of the column-centred features ``x`` [n, ...] (flattened per example), float64 [n, n]."""
    x = _features(x, "centered_gram")
    x = x - x.mean(dim=0, keepdim=True)
    return x @ x.T


def cka_from_grams(k: torch.Tensor, l: torch.Tensor) -> float:
    """CKA of two centred Gram matrices of the same examples."""
    if k.shape != l.shape or k.dim() != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"Gram matrices must be square and of the same examples, got {tuple(k.shape)} and "
                         f"{tuple(l.shape)}")
    nk, nl = torch.linalg.matrix_norm(k), torch.linalg.matrix_norm(l)
    if nk == 0 or nl == 0:
        raise ValueError("CKA is undefined for constant features (a centred Gram matrix of zeros)")
    return float((k * l).sum() / (nk * nl))


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA between features ``x`` [n, ...] and ``y`` [n, ...] of the same n examples."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"features must be of the same examples: {x.shape[0]} vs {y.shape[0]} rows")
    return cka_from_grams(centered_gram(x), centered_gram(y))


def default_layers(model: nn.Module) -> list[str]:
    """The modules compared by default: a timm model's feature stages (``feature_info``), else its top-level
    children; then the output."""
    info = getattr(model, "feature_info", None)
    names = [f["module"] for f in info] if isinstance(info, (list, tuple)) and info else \
        [n for n, _ in model.named_children()]
    return names + [OUTPUT]


def layer_grams(model: nn.Module, batches: Iterable[torch.Tensor], layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Centred Gram matrices of the outputs of ``layers`` (module names, or ``"output"``) over all images of
    ``batches`` (already normalised model inputs), in eval mode without gradients."""
    modules = dict(model.named_modules())
    unknown = [n for n in layers if n != OUTPUT and n not in modules]
    if unknown:
        raise ValueError(f"layers {unknown} are not modules of {type(model).__name__}; some of its modules: "
                         f"{[n for n, _ in model.named_children()]}")
    feats: dict[str, list[torch.Tensor]] = {n: [] for n in layers}

    def hook(name):
        def fn(_module, _inputs, out):
            out = out[0] if isinstance(out, (tuple, list)) else out
            feats[name].append(out.detach().float().flatten(1).cpu())
        return fn

    handles = [modules[n].register_forward_hook(hook(n)) for n in layers if n != OUTPUT]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x in batches:
                out = model(x)
                if OUTPUT in feats:
                    out = out[0] if isinstance(out, (tuple, list)) else out
                    feats[OUTPUT].append(out.detach().float().flatten(1).cpu())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    grams = {}
    for n in layers:  # one layer's features at a time in float64
        grams[n] = centered_gram(torch.cat(feats.pop(n)))
    return grams


def cka_matrix(grams_a: dict[str, torch.Tensor], grams_b: dict[str, torch.Tensor]) -> list[list[float]]:
    """CKA between every layer of model A (rows) and every layer of model B (columns)."""
    out = []
    for ka in grams_a.values():
        out.append([cka_from_grams(ka, kb) for kb in grams_b.values()])
    return [[v if math.isfinite(v) else float("nan") for v in row] for row in out]
