"""The training engine: :class:`Trainer` (one run), :class:`BatchPipeline` (the device-side batch path),
:class:`StagePlan` (the schedule in optimisation steps), checkpoints, metrics files, reports and plots."""

from .pipeline import BatchPipeline, resize_to
from .stage_plan import StagePlan
from .trainer import Trainer, make_schedule, run

__all__ = ["Trainer", "BatchPipeline", "StagePlan", "make_schedule", "run", "resize_to"]
