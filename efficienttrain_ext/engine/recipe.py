"""The recipe settings that follow from a configuration and its schedule: what the learning-rate schedule advances
with, where its warm-up ends, and the drop-path rate at an EfficientTrain++ budget (docs/training.md, "Recipe
fidelity", lists each setting next to the paper's)."""

from __future__ import annotations

from ..config import Config
from ..curriculum.schedules import Schedule
from ..errors import TrainError
from .stage_plan import StagePlan

__all__ = ["progress_rule", "warmup_position", "drop_path_rate", "LEGACY_WARMUP_SHARE"]

# optim.warmup_epochs=null: the warm-up this project used before it took the paper's fixed 20 epochs
LEGACY_WARMUP_SHARE = 20 / 300


def progress_rule(cfg: Config, schedule: Schedule) -> str:
    """``images`` or ``compute`` (engine/stage_plan.py): ``auto`` takes compute for a run that stands for a smaller
    budget than its epochs (efficienttrain++, a YAML schedule with ``budget:``), images otherwise."""
    rule = cfg.curriculum.progress
    if rule != "auto":
        return rule
    return "compute" if schedule.baseline != schedule.epochs else "images"


def warmup_position(cfg: Config, plan: StagePlan) -> float:
    """Where the learning-rate warm-up ends, in the plan's positions: ``optim.warmup_fraction`` of the schedule, or
    after ``optim.warmup_epochs`` epochs of training (all of them when the run is shorter)."""
    o = cfg.optim
    if o.warmup_fraction is not None:
        return o.warmup_fraction * plan.lr_total
    epochs = o.warmup_epochs if o.warmup_epochs is not None else plan.epochs * LEGACY_WARMUP_SHARE
    return plan.position_after_epochs(epochs)


def drop_path_rate(cfg: Config) -> float | None:
    """``model.drop_path``, under efficienttrain++ scaled by budget / ``drop_path_budget`` as the authors' scripts
    do (``--drop_path {rate * args.epoch / 200}``, LeapLabTHU/EfficientTrain _ET_pp_main_*.py)."""
    rate = cfg.model.drop_path
    reference = cfg.curriculum.efficienttrain_pp.drop_path_budget
    if rate is None or cfg.curriculum.name != "efficienttrain++" or reference is None:
        return rate
    scaled = rate * cfg.train.epochs / reference
    if scaled >= 1.0:
        raise TrainError(f"drop path {rate} x budget {cfg.train.epochs} / {reference:g} = {scaled:.3g} is not below 1; "
                         "lower model.drop_path or set curriculum.efficienttrain_pp.drop_path_budget")
    return scaled
