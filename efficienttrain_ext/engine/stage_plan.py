"""The stage plan: a schedule turned into optimisation steps, built once before training.

The :class:`~efficienttrain_ext.curriculum.Schedule` says which size, magnitude, replay and batch factor each epoch
has. The plan adds what follows from the batch settings and the dataset: each stage's per-process batch, the steps
of every epoch, where each epoch starts in global steps, the learning-rate factor of each stage (linear scaling
with the batch factor), and the mapping from a step to training progress. The trainer asks the plan and holds no
curriculum arithmetic of its own.

Progress: the learning-rate schedule and the RandAugment ramp advance with the images trained, not with the number
of steps: with ``batch_scale`` a stage has fewer, larger steps per epoch, and each of its steps moves the schedules
further. How much an epoch moves them depends on the progress rule:

* ``images`` (efficienttrain, progressive, none): every epoch counts 1;
* ``compute`` (efficienttrain++ and budgeted YAML schedules, which run more epochs than the budget they stand for):
  an epoch at size B counts (B/v)^2, its cost relative to a final-size epoch. Each of efficienttrain++'s ten
  equal-compute stages then spans a tenth of the schedule, as in the authors' scripts, which restart the cosine
  at every stage with ``epochs = budget * (224/B)^2`` and ``start_epoch`` scaled by the pixel ratio
  (LeapLabTHU/EfficientTrain, _ET_pp_main_res50.py and utils_buffer.py ``auto_load_model``).

Positions are in optimizer steps at the reference global batch (``batch_size`` x processes x ``accum``, timm's
scheduler counts those): step ``i`` of epoch ``e`` sits at ``ref_steps * (P[e] + w[e] * i / steps(e))``, with
``w[e]`` the epoch's weight and ``P[e]`` the weights of the epochs before it.

Gradient accumulation: an optimizer step is ``accum`` micro-batches of the stage's per-process batch; an epoch
holds whole optimizer steps (micro-batches left over at its end are not trained on, as in the authors' loop).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..curriculum.schedules import Schedule, Stage
from ..errors import TrainError

__all__ = ["StagePlan", "steps_per_epoch", "PROGRESS_RULES"]

PROGRESS_RULES = ("images", "compute")


def steps_per_epoch(dataset_size: int, batch: int, world: int = 1) -> int:
    """Optimisation steps per epoch with ``drop_last``: what ``len(DataLoader)`` gives with a DistributedSampler
    (``drop_last=True``: each rank gets ``dataset_size // world`` samples) or plain shuffling."""
    return (dataset_size // world) // batch


@dataclass(frozen=True)
class StagePlan:
    schedule: Schedule
    batch_size: int  # train.batch_size per process: the reference micro-batch of the learning-rate schedule
    world: int
    stage_batch: tuple[int, ...]  # per-process micro-batch of each stage
    epoch_steps: tuple[int, ...]  # optimizer steps of each epoch
    epoch_start: tuple[int, ...]  # global step at which each epoch starts (one more entry: the total)
    ref_steps: int  # optimizer steps per epoch at batch_size
    accum: int = 1  # micro-batches per optimizer step
    epoch_weight: tuple[float, ...] = ()  # each epoch's share of the schedules' progress (module docstring)
    epoch_position: tuple[float, ...] = ()  # cumulative weights: where each epoch starts (one more entry: the total)

    @classmethod
    def build(cls, schedule: Schedule, batch_size: int, dataset_size: int, world: int = 1, accum: int = 1,
              progress: str = "images") -> "StagePlan":
        if progress not in PROGRESS_RULES:
            raise TrainError(f"progress rule must be one of {PROGRESS_RULES}, got {progress!r}")
        if isinstance(accum, bool) or not isinstance(accum, int) or accum < 1:
            raise TrainError(f"accumulation steps must be an integer >= 1, got {accum!r}")
        stage_batch = tuple(max(1, int(round(batch_size * st.batch_scale))) for st in schedule.stages)
        for b in set(stage_batch) | {batch_size}:
            if steps_per_epoch(dataset_size, b, world) < accum:
                raise TrainError(f"the training set ({dataset_size} images) is smaller than one global batch "
                                 f"({b} x {world} processes x {accum} accumulation steps)")
        per_stage = [steps_per_epoch(dataset_size, b, world) // accum for b in stage_batch]
        epoch_steps = tuple(per_stage[schedule.stage_index(e)] for e in range(schedule.epochs))
        start = [0]
        for n in epoch_steps:
            start.append(start[-1] + n)
        v = schedule.final_size
        weights = tuple(1.0 if progress == "images" else (schedule.size_at(e) / v) ** 2
                        for e in range(schedule.epochs))
        position = [0.0]
        for w in weights:
            position.append(position[-1] + w)
        return cls(schedule, batch_size, world, stage_batch, epoch_steps, tuple(start),
                   steps_per_epoch(dataset_size, batch_size, world) // accum, accum, weights, tuple(position))

    # -- where training is
    @property
    def epochs(self) -> int:
        return self.schedule.epochs

    @property
    def total_steps(self) -> int:
        return self.epoch_start[-1]

    def stage_index(self, epoch: int) -> int:
        return self.schedule.stage_index(epoch)

    def stage(self, epoch: int) -> Stage:
        return self.schedule.stages[self.stage_index(epoch)]

    def is_stage_start(self, epoch: int) -> bool:
        return epoch == 0 or self.stage_index(epoch) != self.stage_index(epoch - 1)

    def global_step(self, epoch: int, i: int) -> int:
        return self.epoch_start[epoch] + i

    # -- what a step does
    def batch(self, epoch: int) -> int:
        return self.stage_batch[self.stage_index(epoch)]

    def lr_factor(self, epoch: int) -> float:
        """The stage's learning-rate multiplier: its batch over ``batch_size`` (linear scaling rule)."""
        return self.batch(epoch) / self.batch_size

    def micro_batches(self, epoch: int) -> int:
        """Micro-batches that ``epoch`` trains on (``accum`` per optimizer step)."""
        return self.epoch_steps[epoch] * self.accum

    def lr_position(self, epoch: int, done: int) -> float:
        """The learning-rate schedule's position after ``done`` optimizer steps of ``epoch``, in optimizer steps at
        ``batch_size`` (module docstring)."""
        frac = done / self.epoch_steps[epoch]
        return self.ref_steps * (self.epoch_position[epoch] + self.epoch_weight[epoch] * frac)

    @property
    def lr_total(self) -> float:
        """The position at the end of training."""
        return self.ref_steps * self.epoch_position[-1]

    def position_after_epochs(self, epochs: float) -> float:
        """The position after ``epochs`` epochs of training (fractional; past the end: the end), e.g. where a
        warm-up of that many epochs ends."""
        if epochs >= self.epochs:
            return self.lr_total
        e = int(epochs)
        return self.ref_steps * (self.epoch_position[e] + self.epoch_weight[e] * (epochs - e))

    def progress(self, epoch: int, done: int) -> float:
        """Training progress t / T in [0, 1] after ``done`` steps of ``epoch`` (module docstring)."""
        return self.lr_position(epoch, done) / self.lr_total

    def magnitude(self, epoch: int, done: int) -> float:
        """RandAugment magnitude for step ``done`` of ``epoch``: the schedule's m at this progress."""
        return self.schedule.magnitude_at(self.progress(epoch, done), epoch)

    def describe(self) -> list[dict]:
        """One record per stage: its schedule entry plus batch and steps per epoch."""
        return [dict(start=st.start, end=st.end, size=st.size, batch=b, steps_per_epoch=self.epoch_steps[st.start],
                     replay=st.replay, lr_factor=b / self.batch_size, global_batch=b * self.world * self.accum,
                     progress_start=self.epoch_position[st.start] / self.epoch_position[-1])
                for st, b in zip(self.schedule.stages, self.stage_batch)]
