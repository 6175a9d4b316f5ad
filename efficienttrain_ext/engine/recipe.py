"""The recipe settings that follow from a configuration and its schedule: what the learning-rate schedule advances
with, where its warm-up ends, and the drop-path rate at an EfficientTrain++ budget (docs/training.md, "Recipe
fidelity", lists each setting next to the paper's)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import Config
from ..curriculum.schedules import Schedule
from ..errors import TrainError
from .stage_plan import StagePlan

__all__ = ["progress_rule", "warmup_position", "warmup_note", "drop_path_rate", "LEGACY_WARMUP_SHARE", "AuthorsStageLR",
           "set_group_lr"]

# optim.warmup_epochs=null: the warm-up this project used before it took the paper's fixed 20 epochs
LEGACY_WARMUP_SHARE = 20 / 300


def progress_rule(cfg: Config, schedule: Schedule) -> str:
    """``images`` or ``compute`` (engine/stage_plan.py): ``auto`` takes compute for a run that stands for a smaller
    budget than its epochs (efficienttrain++, a YAML schedule with ``budget:``), images otherwise."""
    rule = cfg.curriculum.progress
    if rule != "auto":
        return rule
    return "compute" if schedule.baseline != schedule.epochs else "images"


def _recipe_warmup_epochs(cfg: Config, plan: StagePlan) -> float:
    o = cfg.optim
    return o.warmup_epochs if o.warmup_epochs is not None else plan.epochs * LEGACY_WARMUP_SHARE


def _short_run(cfg: Config, plan: StagePlan) -> bool:
    """The recipe's warm-up (in epochs) would take the whole run, and ``optim.short_run_warmup`` caps it."""
    o = cfg.optim
    return o.warmup_fraction is None and o.short_run_warmup is not None \
        and 0 < plan.epochs <= _recipe_warmup_epochs(cfg, plan)


def warmup_position(cfg: Config, plan: StagePlan) -> float:
    """Where the learning-rate warm-up ends, in the plan's positions: ``optim.warmup_fraction`` of the schedule, or
    after ``optim.warmup_epochs`` epochs of training. A run no longer than that warm-up would peak at its last step
    and never decay: it warms up over ``optim.short_run_warmup`` of the run instead (1/5, as the DeiT recipe of
    EfficientTrain++ does; null: all of it)."""
    o = cfg.optim
    if o.warmup_fraction is not None:
        return o.warmup_fraction * plan.lr_total
    if _short_run(cfg, plan):
        return o.short_run_warmup * plan.lr_total
    return plan.position_after_epochs(_recipe_warmup_epochs(cfg, plan))


def warmup_note(cfg: Config, plan: StagePlan) -> str:
    """The warm-up as a run's first lines state it: its share of the schedule, and why when it was capped."""
    text = f"warm-up {warmup_position(cfg, plan) / plan.lr_total:.1%} of the schedule"
    if _short_run(cfg, plan):
        text += (f" (capped by optim.short_run_warmup: the recipe's {_recipe_warmup_epochs(cfg, plan):g}-epoch "
                 f"warm-up is not shorter than this {plan.epochs}-epoch run)")
    if cfg.optim.lr_mode == "authors":
        text += " (optim.lr_mode=authors: every stage restarts its own warm-up and cosine)"
    return text


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


@dataclass(frozen=True)
class AuthorsStageLR:
    """``optim.lr_mode: authors``: EfficientTrain++'s learning rate as the authors' scripts produce it. Each stage k
    of n is a new process (LeapLabTHU/EfficientTrain _ET_pp_main_*.py) with its own cosine of ``rp_k = int(budget
    * (v/B_k)^2)`` epochs and its own warm-up (``int(20)`` epochs, or ``int(0.2 * rp_k)`` for DeiT), trained from
    ``start_k = round(end_{k-1} * B_{k-1}^2 / B_k^2)`` (utils_buffer.py ``auto_load_model``) to ``end_k =
    int(rp_k / n * (k + 1))``; utils_buffer.py ``cosine_scheduler`` gives the rate. Our stage k is mapped linearly
    onto the authors' epochs ``[start_k, end_k]`` of that cosine."""

    peak: float
    final: float
    warmup_from: float
    rp: tuple[int, ...]  # each stage's cosine length (epochs)
    warmup: tuple[float, ...]  # each stage's warm-up (epochs)
    start: tuple[int, ...]  # where each stage starts and ends on its cosine (epochs)
    end: tuple[int, ...]

    @classmethod
    def build(cls, cfg: Config, plan: StagePlan, peak: float) -> "AuthorsStageLR":
        o, schedule = cfg.optim, plan.schedule
        if cfg.curriculum.name != "efficienttrain++":
            raise TrainError("optim.lr_mode=authors restarts the cosine at every efficienttrain++ stage as the "
                             f"authors' scripts do; the curriculum is {cfg.curriculum.name!r}")
        budget, v, n = schedule.baseline, schedule.final_size, len(schedule.stages)
        rp, warm, start, end = [], [], [], []
        for k, st in enumerate(schedule.stages):
            r = max(1, int(budget * (v * v) / (st.size * st.size)))  # their expression: 200 * 224^2/160^2 = 392
            w = float(int(o.warmup_fraction * r) if o.warmup_fraction is not None else int(o.warmup_epochs or 0))
            if w >= r and o.short_run_warmup is not None:  # a budget shorter than the warm-up (warmup_position)
                w = o.short_run_warmup * r
            start.append(0 if k == 0 else round(end[-1] * schedule.stages[k - 1].size ** 2 / st.size ** 2))
            end.append(int(r / n * (k + 1)))
            rp.append(r)
            warm.append(min(w, r))
        return cls(peak, o.min_lr, o.warmup_lr, tuple(rp), tuple(warm), tuple(start), tuple(end))

    def authors_epoch(self, plan: StagePlan, epoch: int, done: int) -> tuple[int, float]:
        """(stage, the epoch on that stage's cosine) after ``done`` optimizer steps of ``epoch``."""
        k = plan.stage_index(epoch)
        st = plan.schedule.stages[k]
        f = (epoch - st.start + done / plan.epoch_steps[epoch]) / (st.end - st.start)
        return k, self.start[k] + f * (self.end[k] - self.start[k])

    def value(self, plan: StagePlan, epoch: int, done: int) -> float:
        k, x = self.authors_epoch(plan, epoch, done)
        w, r = self.warmup[k], self.rp[k]
        if x < w:
            return self.warmup_from + (self.peak - self.warmup_from) * x / w
        return self.final + 0.5 * (self.peak - self.final) * (1 + math.cos(math.pi * (x - w) / max(r - w, 1e-12)))


def set_group_lr(optimizer, value: float) -> None:
    """Every parameter group's rate: ``value`` times its layer-decay scale (as timm's schedulers set it)."""
    for group in optimizer.param_groups:
        group["lr"] = value * group.get("lr_scale", 1.0)
