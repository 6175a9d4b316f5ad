"""The errors efficienttrain_ext raises for problems a user can fix (bad configuration, data, checkpoint, ...).

Every one derives from :class:`EtrainError`, so the ``etrain`` command line reports them all the same way (a
one-line message, exit status 2) and a caller can catch them together. Each also derives from the built-in
exception its kind has always been (``ValueError`` for bad values, ``RuntimeError`` for a state that cannot be
used), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = ["EtrainError", "ConfigError", "ScheduleError", "DataError", "CheckpointError", "TrainError", "SearchError"]


class EtrainError(Exception):
    """Base of every error that efficienttrain_ext reports as a user-facing problem."""


class ConfigError(EtrainError, ValueError):
    """Unknown keys or values of the wrong type or range in a configuration."""


class ScheduleError(EtrainError, ValueError):
    """A curriculum that cannot be built (unknown name, bad YAML, sizes the model cannot take)."""


class DataError(EtrainError, RuntimeError):
    """A dataset that cannot be used (missing files, no images, malformed IDX, bad split)."""


class CheckpointError(EtrainError, RuntimeError):
    """A checkpoint that cannot be used (missing, truncated, corrupt, or from another configuration)."""


class TrainError(EtrainError, RuntimeError):
    """A run that cannot start or continue (bad model, unusable resume point, existing run directory, ...)."""


class SearchError(EtrainError, ValueError):
    """A curriculum search that cannot run with the given candidates, stages or budget."""
