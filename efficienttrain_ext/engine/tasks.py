"""What a run optimises and how it is evaluated: the trainer's loop is the same for every task.

A task gives the training loss of a batch and, for evaluation, per-batch sums (reduced over batches and ranks by the
trainer) and the metrics computed from them. :class:`ClassificationTask` is supervised training with timm's losses;
other tasks (e.g. masked-image pre-training) plug in through the same three methods.
"""

from __future__ import annotations

from typing import Protocol

import torch
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import nn

__all__ = ["Task", "ClassificationTask"]


class Task(Protocol):
    primary: str  # the headline metric (reported at the stage size too, as f"{primary}_at_B")
    higher_is_better: bool  # for the primary metric (the summary's "best")
    eval_width: int  # length of the eval_sums vector

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...

    def eval_sums(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """float64 CPU sums over the batch (summed over batches and ranks, then given to eval_metrics)."""
        ...

    def eval_metrics(self, sums: torch.Tensor) -> dict[str, float]: ...


class ClassificationTask:
    """Cross-entropy on (soft, with Mixup/CutMix) targets; top-1 / top-5 accuracy and loss on the validation set."""

    primary = "top1"
    higher_is_better = True
    eval_width = 4  # loss, top-1 hits, top-5 hits, images

    def __init__(self, soft_targets: bool, smoothing: float):
        if soft_targets:
            self.criterion: nn.Module = SoftTargetCrossEntropy()
        elif smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(smoothing)
        else:
            self.criterion = nn.CrossEntropyLoss()
        self.val_criterion = nn.CrossEntropyLoss(reduction="sum")

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.criterion(model(x), y)

    def eval_sums(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = model(x).float()
        hit = out.topk(min(5, out.shape[1]), dim=1).indices.eq(y[:, None])
        return torch.tensor([float(self.val_criterion(out, y)), float(hit[:, 0].sum()), float(hit.any(1).sum()),
                             float(x.shape[0])], dtype=torch.float64)

    def eval_metrics(self, sums: torch.Tensor) -> dict[str, float]:
        n = max(float(sums[3]), 1.0)
        return {"val_loss": float(sums[0]) / n, "top1": 100.0 * float(sums[1]) / n, "top5": 100.0 * float(sums[2]) / n}
