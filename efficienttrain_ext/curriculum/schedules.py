"""Curriculum schedules: training progress -> (input size B, RandAugment magnitude m).

A :class:`Schedule` is a list of :class:`Stage` s with integer epoch boundaries (stage switches therefore coincide
with epoch ends, where checkpoints are written, which keeps ``--resume`` exact) plus a magnitude rule.

Built-in curricula (``build_schedule(name, ...)``):

``efficienttrain``
    EfficientTrain (Wang et al., ICCV 2023), Table 5: for 300 epochs at final size 224, B = 160 for epochs
    1-180, 192 for 181-240, 224 for 241-300; other lengths scale the boundaries linearly (60%/80%/100%).
    Final size v >= 224 uses B = 160, (160+v)/2, v (Table 8c); smaller v scales proportionally
    (v*160/224, v*192/224, v). m = m0 * t / T per optimisation step (m0 = 9).
``efficienttrain++``
    EfficientTrain++ (TPAMI 2024): 10 stages of equal compute, stage k uses m = k. Reference size lists (at 224,
    scaled by v/224 for other final sizes) per model family, see :data:`ETPP_SIZES`. ``epochs`` is the budget
    in final-size epochs: a stage at size B stands for epochs/10 of them and runs (v/B)^2 times as many epochs,
    so the run is longer than ``epochs`` but costs about as much as ``epochs`` at size v.
``progressive``
    Linear size ramp (Progressive Learning / FFCV / Composer baseline): from ``min_scale * v`` at epoch 0 to v at
    ``(1 - finetune_fraction)`` of training, then v; m = m0 * t / T.
``none``
    The baseline: size v and m = m0 throughout.
``<file>.yaml``
    A user schedule, see :func:`schedule_from_yaml`.

Any curriculum takes the option ``replay`` (EfficientTrain++'s replay buffer, :mod:`.replay`):
an int reuses every loaded batch that many times in the stages below the final size, ``{size: factor}`` sets it
per size; and ``batch_scale`` (EfficientTrain++'s larger batches at small sizes, learning rate scaled linearly):
a number for the stages below the final size, ``{size: factor}``, or ``pixels`` ((v/B)^2). YAML stages take
``replay:`` and ``batch_scale:`` directly.

Size rounding: every B is rounded to the nearest multiple of the model's size step (ties go up) and checked
against its minimum; see :class:`~efficienttrain_ext.curriculum.sizes.SizeRule` and
:func:`~efficienttrain_ext.curriculum.sizes.size_rule_for_model`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import yaml

from ..errors import ScheduleError
from .sizes import SizeRule

__all__ = [
    "Stage",
    "Schedule",
    "ScheduleError",
    "CURRICULA",
    "ETPP_SIZES",
    "DEFAULT_M0",
    "build_schedule",
    "efficienttrain_sizes",
    "etpp_family",
    "schedule_from_yaml",
    "with_batch_scale",
    "with_replay",
    "without_size_ramp",
    "without_magnitude_ramp",
]

DEFAULT_M0 = 9.0


@dataclass(frozen=True)
class Stage:
    """Epochs ``[start, end)`` (0-based) trained at input size ``size``.

    ``magnitude`` is a constant RandAugment magnitude for the stage; None means the schedule's ramp applies.
    ``replay``: every loaded batch is trained on this many times (each time freshly augmented), so the stage loads
    1/replay of the images per epoch for the same number of optimisation steps (EfficientTrain++'s replay buffer:
    at small sizes the data pipeline, not the model, limits the speed).
    ``batch_scale``: the stage's batch is ``round(batch_size * batch_scale)`` with the learning rate scaled by the
    same factor (EfficientTrain++'s larger batches at small sizes, which keep the accelerator busy).
    """

    start: int
    end: int
    size: int
    magnitude: float | None = None
    replay: int = 1
    batch_scale: float = 1.0

    @property
    def epochs(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Schedule:
    """A curriculum over ``epochs`` epochs ending at ``final_size``.

    ``magnitude``: ``"linear"`` (m0 * t / T per step), ``"constant"`` (m0) or ``"stage"`` (each stage's own m).
    ``baseline_epochs``: the length of the baseline this run is compared with (ET++ runs more epochs than the
    compute budget they stand for).
    """

    name: str
    epochs: int
    final_size: int
    stages: tuple[Stage, ...]
    m0: float = DEFAULT_M0
    magnitude: str = "linear"
    baseline_epochs: int | None = None

    def __post_init__(self) -> None:
        if not self.stages:
            raise ScheduleError(f"schedule {self.name!r} has no stages")
        if self.stages[0].start != 0 or self.stages[-1].end != self.epochs:
            raise ScheduleError(f"schedule {self.name!r}: stages must cover epochs 0..{self.epochs}")
        for a, b in zip(self.stages, self.stages[1:]):
            if a.end != b.start:
                raise ScheduleError(f"schedule {self.name!r}: stages are not contiguous ({a} -> {b})")
        for s in self.stages:
            if s.end <= s.start:
                raise ScheduleError(f"schedule {self.name!r}: empty stage {s}")
            if isinstance(s.replay, bool) or not isinstance(s.replay, int) or s.replay < 1:
                raise ScheduleError(f"schedule {self.name!r}: replay must be an integer >= 1, got {s.replay!r}")
            _batch_scale_value(s.batch_scale, f"schedule {self.name!r}: batch_scale")
            if s.size > self.final_size:
                raise ScheduleError(f"schedule {self.name!r}: stage size {s.size} exceeds final size {self.final_size}")
        if self.magnitude not in ("linear", "constant", "stage"):
            raise ScheduleError(f"magnitude rule must be linear, constant or stage, got {self.magnitude!r}")
        if self.magnitude == "stage" and any(s.magnitude is None for s in self.stages):
            raise ScheduleError(f"schedule {self.name!r}: magnitude 'stage' needs a magnitude on every stage")

    @property
    def baseline(self) -> int:
        return self.baseline_epochs if self.baseline_epochs is not None else self.epochs

    def stage_index(self, epoch: int) -> int:
        """Index of the stage that trains (0-based) ``epoch``; epochs past the end map to the last stage."""
        for i, s in enumerate(self.stages):
            if epoch < s.end:
                return i
        return len(self.stages) - 1

    def size_at(self, epoch: int) -> int:
        return self.stages[self.stage_index(epoch)].size

    def epoch_at(self, progress: float) -> int:
        """The (0-based) epoch that training progress ``progress`` (in [0, 1], epochs trained / epochs) falls in."""
        e = int(math.floor(float(progress) * self.epochs + 1e-9))  # an epoch's first step maps to that epoch
        return min(max(e, 0), self.epochs - 1)

    def magnitude_at(self, progress: float, epoch: int | None = None) -> float:
        """RandAugment magnitude at training progress ``progress`` = t / T in [0, 1] (t: epochs trained so far,
        fractional). ``epoch`` (default: the epoch ``progress`` falls in) picks the stage for stage magnitudes."""
        p = min(max(float(progress), 0.0), 1.0)
        stage = self.stages[self.stage_index(self.epoch_at(p) if epoch is None else epoch)]
        if self.magnitude == "constant":
            return float(self.m0)
        if stage.magnitude is not None:
            return float(stage.magnitude)
        return float(self.m0) * p

    def relative_pixels(self) -> float:
        """Pixel count of the run relative to the baseline (the FLOP-free first-order cost estimate)."""
        px = sum(s.epochs * s.size**2 for s in self.stages)
        return px / (self.baseline * self.final_size**2)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Schedule":
        stages = tuple(Stage(int(s["start"]), int(s["end"]), int(s["size"]), s.get("magnitude"), int(s.get("replay", 1)),
                             float(s.get("batch_scale", 1.0)))
                       for s in d["stages"])
        return cls(d["name"], int(d["epochs"]), int(d["final_size"]), stages, m0=float(d["m0"]),
                   magnitude=d["magnitude"], baseline_epochs=d.get("baseline_epochs"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "epochs": self.epochs,
            "final_size": self.final_size,
            "m0": self.m0,
            "magnitude": self.magnitude,
            "baseline_epochs": self.baseline,
            "stages": [
                {"start": s.start, "end": s.end, "size": s.size, "magnitude": s.magnitude, "replay": s.replay,
                 "batch_scale": s.batch_scale}
                for s in self.stages
            ],
        }


# --------------------------------------------------------------------------------------------------------------
# helpers


def _integer_boundaries(weights: Sequence[float], total: int) -> list[int]:
    """Cumulative integer epoch boundaries for stages with the given (relative) lengths summing to ``total``.

    Rounding the cumulative sums (not each length) keeps every boundary within half an epoch of its exact value.
    In very short runs the last stage is kept non-empty, so training always ends at the final stage's size.
    """
    acc, out, norm = 0.0, [], sum(weights)
    for w in weights:
        acc += w
        out.append(int(math.floor(acc / norm * total + 0.5)))
    out[-1] = total
    if total > 1:  # the last stage (the final size for the built-ins) always gets at least one epoch
        out[:-1] = [min(b, total - 1) for b in out[:-1]]
    return out


def _stages(sizes: Sequence[int], bounds: Sequence[int], mags: Sequence[float | None] | None = None,
            replays: Sequence[int] | None = None, batch_scales: Sequence[float] | None = None) -> tuple[Stage, ...]:
    """Stages from per-stage sizes and end boundaries; empty stages dropped, equal neighbours merged."""
    mags = list(mags) if mags is not None else [None] * len(sizes)
    replays = list(replays) if replays is not None else [1] * len(sizes)
    batch_scales = list(batch_scales) if batch_scales is not None else [1.0] * len(sizes)
    out: list[Stage] = []
    start = 0
    for size, end, m, r, bs in zip(sizes, bounds, mags, replays, batch_scales):
        if end <= start:
            continue
        new = Stage(start, end, int(size), m, r, bs)
        if out and replace(out[-1], start=0, end=0) == replace(new, start=0, end=0):
            out[-1] = replace(out[-1], end=end)
        else:
            out.append(new)
        start = end
    return tuple(out)


def _replay_value(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v < 1:
        raise ScheduleError(f"{what} must be an integer >= 1, got {v!r}")
    return int(v)


def _batch_scale_value(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ScheduleError(f"{what} must be a positive number, got {v!r}")
    return float(v)


def _per_stage(schedule: Schedule, spec: Any, what: str, parse: Callable[[Any, str], Any], default: Any,
               rules: Mapping[str, Callable[[Stage], Any]] | None = None) -> list[Any]:
    """One value per stage from ``spec``: a value for every stage below the final size, ``{size: value}``, or the
    name of a rule in ``rules``."""
    if isinstance(spec, str) and rules and spec in rules:
        return [rules[spec](st) for st in schedule.stages]
    if isinstance(spec, Mapping):
        table = {int(k): parse(v, f"{what} for size {k}") for k, v in spec.items()}
        unknown = sorted(set(table) - {s.size for s in schedule.stages})
        if unknown:
            raise ScheduleError(f"{what} given for sizes {unknown}, but the schedule's stage sizes are "
                                f"{sorted({s.size for s in schedule.stages})}")
        return [table.get(st.size, default) for st in schedule.stages]
    if isinstance(spec, str):
        raise ScheduleError(f"{what}: unknown rule {spec!r}; give a number, {{size: value}}"
                            + (f" or one of {sorted(rules)}" if rules else ""))
    value = parse(spec, what)
    return [value if st.size < schedule.final_size else default for st in schedule.stages]


def with_replay(schedule: Schedule, replay: int | Mapping[int, int]) -> Schedule:
    """``schedule`` with replay factors: an int applies to every stage below the final size (the stages where
    loading dominates); a mapping ``{size: factor}`` sets them per input size (sizes not listed keep 1)."""
    values = _per_stage(schedule, replay, "replay", _replay_value, 1)
    return replace(schedule, stages=tuple(replace(st, replay=v) for st, v in zip(schedule.stages, values)))


def with_batch_scale(schedule: Schedule, batch_scale: float | str | Mapping[int, float]) -> Schedule:
    """``schedule`` with batch multipliers (the learning rate follows linearly): a number applies to every stage
    below the final size, ``{size: factor}`` per input size, ``"pixels"`` keeps the pixels per batch constant
    (factor (v/B)^2: a step costs about the same at every size)."""
    rules = {"pixels": lambda st: (schedule.final_size / st.size) ** 2}
    values = _per_stage(schedule, batch_scale, "batch_scale", _batch_scale_value, 1.0, rules)
    return replace(schedule, stages=tuple(replace(st, batch_scale=v) for st, v in zip(schedule.stages, values)))


def _check_common(epochs: int, final_size: int, rule: SizeRule) -> None:
    if not isinstance(epochs, int) or epochs < 1:
        raise ScheduleError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(final_size, int) or final_size < 1:
        raise ScheduleError(f"final size must be a positive integer, got {final_size!r}")
    rule.check(final_size, "final size")


def _round_checked(sizes: Sequence[float], rule: SizeRule, final_size: int, name: str) -> list[int]:
    out = []
    for s in sizes:
        b = min(rule.round(s), final_size)
        rule.check(b, f"{name}: stage size {b} (from {s:g})")
        out.append(b)
    return out


# --------------------------------------------------------------------------------------------------------------
# built-in curricula

# Table 5 of EfficientTrain: fraction of training at which each size ends.
ET_BOUNDARIES = (0.6, 0.8, 1.0)

# EfficientTrain++ reference resolution lists at final size 224, one entry per equal-compute stage (m = index).
ETPP_SIZES: dict[str, tuple[int, ...]] = {
    "cnn": (96,) * 2 + (160,) * 4 + (224,) * 4,  # ResNet, Swin, CSWin and other CNNs
    "convnext": (160,) * 6 + (224,) * 4,
    "deit": (96,) * 2 + (160,) * 4 + (192,) * 2 + (224,) * 2,  # DeiT / ViT
}


def efficienttrain_sizes(final_size: int) -> tuple[float, float, float]:
    """Unrounded EfficientTrain sizes (Table 5 at 224, Table 8c above 224, proportional below).

    Below 224 the sizes stay proportional (v*160/224, v*192/224, v) rather than following Table 8c's 160,
    (160+v)/2, v: the papers use that rule for larger final sizes (their 384 runs), and extended below 224 it would
    keep B >= 160 down to v = 160, where the schedule collapses to one size (at v = 192 it gives 160/176/192, a 0.79x run instead of
    the 0.65x that the proportional rule keeps at every v <= 224)."""
    v = final_size
    if v >= 224:
        return 160.0, (160.0 + v) / 2.0, float(v)
    return v * 160.0 / 224.0, v * 192.0 / 224.0, float(v)


def efficienttrain(epochs: int, final_size: int, rule: SizeRule = SizeRule(), m0: float = DEFAULT_M0) -> Schedule:
    _check_common(epochs, final_size, rule)
    sizes = _round_checked(efficienttrain_sizes(final_size), rule, final_size, "efficienttrain")
    bounds = _integer_boundaries([ET_BOUNDARIES[0]] + [b - a for a, b in zip(ET_BOUNDARIES, ET_BOUNDARIES[1:])], epochs)
    return Schedule("efficienttrain", epochs, final_size, _stages(sizes, bounds), m0=m0, magnitude="linear")


def etpp_family(model_or_name: Any) -> str:
    """ET++ size-list family of a timm model (instance or name): ``deit``, ``convnext`` or ``cnn``."""
    if isinstance(model_or_name, str):
        name = model_or_name.lower()
    else:
        declared = getattr(model_or_name, "etpp_family", None)  # a wrapper states its family (models/mae.py)
        if declared is not None:
            if declared not in ETPP_SIZES:
                raise ScheduleError(f"{type(model_or_name).__name__}.etpp_family is {declared!r}; choose from "
                                    f"{sorted(ETPP_SIZES)}")
            return declared
        name = type(model_or_name).__name__.lower()
    if "convnext" in name:
        return "convnext"
    # timm's VisionTransformer / VisionTransformerDistilled (not PyramidVisionTransformerV2: a hierarchical model)
    if name.startswith(("deit", "vit", "visiontransformer")):
        return "deit"
    return "cnn"


def efficienttrain_pp(
    epochs: int,
    final_size: int,
    rule: SizeRule = SizeRule(),
    family: str = "cnn",
    m0: float = DEFAULT_M0,
) -> Schedule:
    """EfficientTrain++'s compute-normalised staircase (module docstring); ``family`` picks :data:`ETPP_SIZES`."""
    _check_common(epochs, final_size, rule)
    if family not in ETPP_SIZES:
        raise ScheduleError(f"unknown efficienttrain++ family {family!r}; choose from {sorted(ETPP_SIZES)}")
    ref = ETPP_SIZES[family]
    sizes = _round_checked([b * final_size / 224.0 for b in ref], rule, final_size, "efficienttrain++")
    # each stage stands for epochs/10 final-size epochs of compute, i.e. (v/B)^2 times as many epochs at B
    weights = [(final_size / b) ** 2 for b in sizes]
    # short budgets cannot give every stage a whole epoch: empty stages are dropped rather than the run lengthened
    total = max(1, int(math.floor(epochs / len(ref) * sum(weights) + 0.5)))
    bounds = _integer_boundaries(weights, total)
    mags = [float(k) * m0 / DEFAULT_M0 for k in range(len(ref))]  # m = k for the paper's m0 = 9
    return Schedule(
        "efficienttrain++", total, final_size, _stages(sizes, bounds, mags), m0=m0, magnitude="stage",
        baseline_epochs=epochs,
    )


def progressive(
    epochs: int,
    final_size: int,
    rule: SizeRule = SizeRule(),
    m0: float = DEFAULT_M0,
    min_scale: float = 160.0 / 224.0,
    finetune_fraction: float = 0.2,
) -> Schedule:
    _check_common(epochs, final_size, rule)
    if not 0.0 < min_scale <= 1.0 or not 0.0 <= finetune_fraction < 1.0:
        raise ScheduleError("progressive: need 0 < min_scale <= 1 and 0 <= finetune_fraction < 1")
    ramp = max(1, int(math.floor(epochs * (1.0 - finetune_fraction) + 0.5)))
    raw = []
    for e in range(epochs):
        frac = min(e / max(ramp - 1, 1), 1.0) if e < ramp else 1.0
        raw.append(final_size * (min_scale + (1.0 - min_scale) * frac))
    sizes = _round_checked(raw, rule, final_size, "progressive")
    return Schedule("progressive", epochs, final_size, _stages(sizes, list(range(1, epochs + 1))), m0=m0)


def baseline(epochs: int, final_size: int, rule: SizeRule = SizeRule(), m0: float = DEFAULT_M0) -> Schedule:
    _check_common(epochs, final_size, rule)
    return Schedule("none", epochs, final_size, (Stage(0, epochs, final_size),), m0=m0, magnitude="constant")


def schedule_from_yaml(
    source: str | os.PathLike | Mapping[str, Any],
    epochs: int,
    final_size: int,
    rule: SizeRule = SizeRule(),
    m0: float | None = None,
) -> Schedule:
    """A user schedule. YAML layout::

        name: my_curriculum          # optional
        magnitude: linear            # linear (m0*t/T), constant (m0) or stage (per-stage magnitude)
        m0: 9                        # optional
        stages:                      # in order; lengths as `fraction` of the run or absolute `epochs`
          - {fraction: 0.5, scale: 0.75}       # size as `scale` of the final size or absolute `size`
          - {fraction: 0.5, size: 224, magnitude: 9}
                                     # optional per stage: replay: 2 (reuse each loaded batch twice, Stage.replay),
                                     # batch_scale: 2 (twice the batch and learning rate, Stage.batch_scale)
        budget: 30                   # optional, with absolute stage epochs: what they cost in final-size epochs

    Fractions are of ``epochs``; absolute ``epochs`` must not be mixed with fractions and must sum to ``epochs``,
    unless the file gives a ``budget`` (like efficienttrain++, e.g. the schedules ``etrain search --algorithm
    etpp`` writes): then ``epochs`` is the budget of the run, the stage epochs are scaled by ``epochs / budget``
    (exactly as written when they are equal) and the schedule's baseline is ``epochs``. Sizes are rounded to the
    model's rule like the built-ins.
    """
    if isinstance(source, Mapping):
        spec, where = dict(source), "schedule"
    else:
        where = os.fspath(source)
        try:
            with open(where) as f:
                spec = yaml.safe_load(f)
        except OSError as e:
            raise ScheduleError(f"cannot read schedule file {where}: {e}") from e
        except yaml.YAMLError as e:
            raise ScheduleError(f"schedule file {where} is not valid YAML: {e}") from e
    if not isinstance(spec, Mapping) or not isinstance(spec.get("stages"), list) or not spec["stages"]:
        raise ScheduleError(f"{where}: expected a mapping with a non-empty 'stages' list")
    _check_common(epochs, final_size, rule)
    unknown = set(spec) - {"name", "magnitude", "m0", "stages", "budget"}
    if unknown:
        raise ScheduleError(f"{where}: unknown keys {sorted(unknown)}")
    m0 = float(spec.get("m0", m0 if m0 is not None else DEFAULT_M0))
    stages = spec["stages"]
    kinds = {("fraction" in s) for s in stages if isinstance(s, Mapping)}
    if len(kinds) != 1 or not all(isinstance(s, Mapping) for s in stages):
        raise ScheduleError(f"{where}: every stage needs either 'fraction' or 'epochs' (not a mix)")
    lengths, raw_sizes, mags, replays, batch_scales = [], [], [], [], []
    for i, s in enumerate(stages):
        extra = set(s) - {"fraction", "epochs", "size", "scale", "magnitude", "replay", "batch_scale"}
        if extra:
            raise ScheduleError(f"{where}: stage {i}: unknown keys {sorted(extra)}")
        length = float(s.get("fraction", s.get("epochs", 0)))
        if length <= 0:
            raise ScheduleError(f"{where}: stage {i}: length must be positive")
        if ("size" in s) == ("scale" in s):
            raise ScheduleError(f"{where}: stage {i}: give exactly one of 'size' or 'scale'")
        size = float(s["size"]) if "size" in s else float(s["scale"]) * final_size
        if size > final_size:
            raise ScheduleError(f"{where}: stage {i}: size {size:g} exceeds the final size {final_size}")
        lengths.append(length)
        raw_sizes.append(size)
        mags.append(float(s["magnitude"]) if s.get("magnitude") is not None else None)
        replays.append(_replay_value(s.get("replay", 1), f"{where}: stage {i}: replay"))
        batch_scales.append(_batch_scale_value(s.get("batch_scale", 1.0), f"{where}: stage {i}: batch_scale"))
    total, baseline_epochs = epochs, None
    budget = spec.get("budget")
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) \
                or budget <= 0:
            raise ScheduleError(f"{where}: budget must be a positive number of final-size epochs, got {budget!r}")
        if "epochs" not in stages[0]:
            raise ScheduleError(f"{where}: a budget goes with absolute stage 'epochs', not fractions")
        # the stage epochs stand for `budget` final-size epochs; this run's budget is `epochs`
        total, baseline_epochs = max(1, int(math.floor(sum(lengths) * epochs / budget + 0.5))), epochs
    elif "epochs" in stages[0]:
        if abs(sum(lengths) - epochs) > 1e-6:
            raise ScheduleError(f"{where}: stage epochs sum to {sum(lengths):g}, but the run has {epochs} epochs")
    sizes = _round_checked(raw_sizes, rule, final_size, os.path.basename(where))
    bounds = _integer_boundaries(lengths, total)
    name = str(spec.get("name", os.path.splitext(os.path.basename(where))[0]))
    return Schedule(name, total, final_size, _stages(sizes, bounds, mags, replays, batch_scales), m0=m0,
                    magnitude=str(spec.get("magnitude", "linear")), baseline_epochs=baseline_epochs)




def without_size_ramp(schedule: Schedule) -> Schedule:
    """``schedule`` with every stage at the final size (Table 13a "RandAugment ramp only"); stage lengths, magnitudes,
    replay and batch factors are kept."""
    return replace(schedule, name=f"{schedule.name}-no-size-ramp",
                   stages=tuple(replace(st, size=schedule.final_size) for st in schedule.stages))


def without_magnitude_ramp(schedule: Schedule) -> Schedule:
    """``schedule`` with RandAugment at m0 throughout (Table 13a "low-frequency cropping only")."""
    return replace(schedule, name=f"{schedule.name}-no-magnitude-ramp", magnitude="constant",
                   stages=tuple(replace(st, magnitude=None) for st in schedule.stages))


CURRICULA: dict[str, Callable[..., Schedule]] = {
    "efficienttrain": efficienttrain,
    "efficienttrain++": efficienttrain_pp,
    "progressive": progressive,
    "none": baseline,
}


def build_schedule(
    name: str,
    epochs: int,
    final_size: int,
    rule: SizeRule = SizeRule(),
    m0: float = DEFAULT_M0,
    *,
    family: str | None = None,
    min_scale: float | None = None,
    finetune_fraction: float | None = None,
    replay: int | Mapping[int, int] | None = None,
    batch_scale: float | str | Mapping[int, float] | None = None,
    size_ramp: bool = True,
    magnitude_ramp: bool = True,
) -> Schedule:
    """Build a curriculum by name, or from a YAML file when ``name`` ends in .yaml/.yml.

    ``family``: efficienttrain++'s size list (default cnn); ``min_scale`` / ``finetune_fraction``: progressive's
    ramp; ``replay`` / ``batch_scale`` (any curriculum): see :func:`with_replay` and :func:`with_batch_scale`;
    ``size_ramp`` / ``magnitude_ramp`` False: the ablations of :func:`without_size_ramp` /
    :func:`without_magnitude_ramp`. An option that the curriculum does not take is an error.
    """
    given = {k: v for k, v in (("family", family), ("min_scale", min_scale), ("finetune_fraction", finetune_fraction))
             if v is not None}
    takes = {"efficienttrain++": {"family"}, "progressive": {"min_scale", "finetune_fraction"}}
    wrong = sorted(set(given) - takes.get(name, set()))
    if wrong:
        raise ScheduleError(f"curriculum {name!r} does not take the options {wrong}"
                            + "".join(f"; {n} takes {sorted(t)}" for n, t in takes.items()))
    if name.endswith((".yaml", ".yml")):
        schedule = schedule_from_yaml(name, epochs, final_size, rule, m0=m0)
    elif name in CURRICULA:
        schedule = CURRICULA[name](epochs, final_size, rule, m0=m0, **given)
    else:
        raise ScheduleError(
            f"unknown curriculum {name!r}; choose from {sorted(CURRICULA)} or give a schedule .yaml file"
        )
    if replay is not None:
        schedule = with_replay(schedule, replay)
    if batch_scale is not None:
        schedule = with_batch_scale(schedule, batch_scale)
    if not size_ramp:
        schedule = without_size_ramp(schedule)
    if not magnitude_ramp:
        schedule = without_magnitude_ramp(schedule)
    return schedule
