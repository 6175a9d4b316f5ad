"""The curriculum: which input size B and RandAugment magnitude m each part of training uses, and what it costs.

* :mod:`.schedules`: :class:`Schedule` / :class:`Stage` and the built-in curricula (EfficientTrain, EfficientTrain++,
  progressive resizing, the baseline, YAML schedules), replay and batch factors;
* :mod:`.sizes`: the sizes a model takes (:class:`SizeRule`);
* :mod:`.switching`: in-process size switches for ViT/Swin-style models (optimizer and EMA carried along);
* :mod:`.flops`: train FLOPs per image at each size; :mod:`.tables`: stage tables with predicted cost;
* :mod:`.replay`: EfficientTrain++'s replay buffer; :mod:`.search`: searched schedules.

In any training loop::

    sched = efficienttrain_ext.curriculum.plan("efficienttrain", epochs=300, final_size=224, model=model)
    size = sched.size_at(epoch)                   # B for this epoch
    m = sched.magnitude_at(epochs_done / 300)     # RandAugment magnitude at this point of training
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from .flops import flops_by_size, train_flops_per_image
from .replay import loads_needed, replay_batches
from .schedules import (CURRICULA, DEFAULT_M0, ETPP_SIZES, Schedule, ScheduleError, Stage, baseline, build_schedule,
                        efficienttrain, efficienttrain_pp, efficienttrain_sizes, progressive, etpp_family, schedule_from_yaml, with_batch_scale, with_replay,
                        without_magnitude_ramp, without_size_ramp)
from .sizes import SizeRule, can_resize, current_input_size, size_rule_for_model
from .switching import resized_view, switch_input_size
from .tables import StageCost, schedule_table, stage_costs

__all__ = [
    "plan", "Schedule", "Stage", "SizeRule", "ScheduleError", "CURRICULA", "DEFAULT_M0", "ETPP_SIZES",
    "build_schedule", "efficienttrain", "efficienttrain_pp", "progressive", "baseline", "efficienttrain_sizes", "etpp_family", "schedule_from_yaml", "with_batch_scale", "with_replay",
    "without_magnitude_ramp", "without_size_ramp", "size_rule_for_model", "can_resize", "current_input_size",
    "switch_input_size", "resized_view", "flops_by_size", "train_flops_per_image", "stage_costs", "schedule_table",
    "StageCost", "replay_batches", "loads_needed",
]


def plan(curriculum: str = "efficienttrain", *, epochs: int, final_size: int, model: nn.Module | None = None,
         m0: float = DEFAULT_M0, size_multiple: int | None = None, min_size: int | None = None,
         **options: Any) -> Schedule:
    """The stages of ``curriculum`` for a run of ``epochs`` ending at ``final_size``, with sizes rounded to what
    ``model`` takes (any size when no model is given). ``options`` go to :func:`build_schedule` (``replay``,
    ``batch_scale``, ``family``, ``min_scale``, ``finetune_fraction``, ``size_ramp``, ``magnitude_ramp``);
    efficienttrain++'s size list follows the model's family unless ``family`` is given. The result answers
    ``size_at(epoch)`` and ``magnitude_at(progress)``."""
    rule = size_rule_for_model(model, size_multiple, min_size) if model is not None else \
        SizeRule(step=size_multiple or 1, min_size=min_size or 1)
    opts: Mapping[str, Any] = dict(options)
    if curriculum == "efficienttrain++" and opts.get("family") is None:
        opts = {**opts, "family": etpp_family(model) if model is not None else "cnn"}
    return build_schedule(curriculum, epochs, final_size, rule, m0, **opts)
