"""Exceptions that the CLI turns into a one-line message and a non-zero exit.

Every error a user can cause with bad input (names, ratios, files, checkpoints) is raised as a
subclass of :class:`TPPError` whose message says what is wrong *and* how to fix it.
"""


class TPPError(Exception):
    """Base class of user-facing errors: the message is shown without a traceback."""


class DataError(TPPError):
    """A dataset is unknown, missing, corrupt or cannot be downloaded."""


class ModelError(TPPError):
    """A model name is unknown or a checkpoint does not match the architecture."""


class ConfigError(TPPError):
    """A malformed option, schedule, ratio or configuration file."""


class CheckpointError(TPPError):
    """A checkpoint is missing, corrupt, or from another architecture."""


class PruningError(TPPError):
    """A pruning request cannot be honoured safely."""
