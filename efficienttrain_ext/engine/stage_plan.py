"""The stage plan: a schedule turned into optimisation steps, built once before training.

The :class:`~efficienttrain_ext.curriculum.Schedule` says which size, magnitude, replay and batch factor each epoch
has. The plan adds what follows from the batch settings and the dataset: each stage's per-process batch, the steps
of every epoch, where each epoch starts in global steps, the learning-rate factor of each stage (linear scaling
with the batch factor), and the mapping from a step to training progress. The trainer asks the plan and holds no
curriculum arithmetic of its own.

Progress is counted in epochs, so the learning-rate schedule and the RandAugment ramp advance with the images
trained, not with the number of steps: with ``batch_scale`` a stage has fewer, larger steps per epoch, and each of
its steps moves the schedules further. In units of ``batch_size`` steps (timm's scheduler counts those), step ``i``
of epoch ``e`` sits at ``e * ref_steps + i * ref_steps // steps(e)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..curriculum.schedules import Schedule, Stage
from ..errors import TrainError

__all__ = ["StagePlan", "steps_per_epoch"]


def steps_per_epoch(dataset_size: int, batch: int, world: int = 1) -> int:
    """Optimisation steps per epoch with ``drop_last``: what ``len(DataLoader)`` gives with a DistributedSampler
    (``drop_last=True``: each rank gets ``dataset_size // world`` samples) or plain shuffling."""
    return (dataset_size // world) // batch


@dataclass(frozen=True)
class StagePlan:
    schedule: Schedule
    batch_size: int  # train.batch_size per process: the reference batch of the learning-rate schedule
    world: int
    stage_batch: tuple[int, ...]  # per-process batch of each stage
    epoch_steps: tuple[int, ...]  # optimisation steps of each epoch
    epoch_start: tuple[int, ...]  # global step at which each epoch starts (one more entry: the total)
    ref_steps: int  # steps per epoch at batch_size

    @classmethod
    def build(cls, schedule: Schedule, batch_size: int, dataset_size: int, world: int = 1) -> "StagePlan":
        stage_batch = tuple(max(1, int(round(batch_size * st.batch_scale))) for st in schedule.stages)
        for b in set(stage_batch) | {batch_size}:
            if steps_per_epoch(dataset_size, b, world) == 0:
                raise TrainError(f"the training set ({dataset_size} images) is smaller than one global batch "
                                 f"({b} x {world})")
        per_stage = [steps_per_epoch(dataset_size, b, world) for b in stage_batch]
        epoch_steps = tuple(per_stage[schedule.stage_index(e)] for e in range(schedule.epochs))
        start = [0]
        for n in epoch_steps:
            start.append(start[-1] + n)
        return cls(schedule, batch_size, world, stage_batch, epoch_steps, tuple(start),
                   steps_per_epoch(dataset_size, batch_size, world))

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

    def lr_position(self, epoch: int, done: int) -> int:
        """The learning-rate schedule's position after ``done`` steps of ``epoch``, in steps of ``batch_size``."""
        return epoch * self.ref_steps + done * self.ref_steps // self.epoch_steps[epoch]

    def progress(self, epoch: int, done: int) -> float:
        """Training progress t / T in [0, 1] after ``done`` steps of ``epoch`` (in epochs trained)."""
        return self.lr_position(epoch, done) / (self.epochs * self.ref_steps)

    def magnitude(self, epoch: int, done: int) -> float:
        """RandAugment magnitude for step ``done`` of ``epoch``: the schedule's m at this progress."""
        return self.schedule.magnitude_at(self.progress(epoch, done), epoch)

    def describe(self) -> list[dict]:
        """One record per stage: its schedule entry plus batch and steps per epoch."""
        return [dict(start=st.start, end=st.end, size=st.size, batch=b, steps_per_epoch=self.epoch_steps[st.start],
                     replay=st.replay, lr_factor=b / self.batch_size)
                for st, b in zip(self.schedule.stages, self.stage_batch)]
