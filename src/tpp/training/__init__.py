"""Training engine: LR schedules, SGD, evaluation, the epoch loop, checkpoints and run folders.

Knows nothing of the command line; :mod:`tpp.cli` is a thin layer on top.

>>> from tpp.training import Trainer, build_optimizer, parse_lr_schedule
>>> schedule = parse_lr_schedule("0:0.01,60:0.001,90:0.0001")
>>> optimizer = build_optimizer(model, schedule.base_lr)                      # doctest: +SKIP
>>> Trainer(model, optimizer, train_loader, test_loader, epochs=120, schedule=schedule).fit()  # doctest: +SKIP
"""

from tpp.training.device import device_name, resolve_device
from tpp.training.evaluation import evaluate, topk_correct
from tpp.training.hooks import Stateful, StepHooks
from tpp.training.loggers import MetricsLogger, TensorBoardLogger, open_tensorboard
from tpp.training.optim import DEFAULT_MOMENTUM, DEFAULT_WEIGHT_DECAY, build_optimizer, set_lr
from tpp.training.rundir import RunDirectory, source_git_commit
from tpp.training.schedule import LRSchedule, parse_lr_schedule
from tpp.training.seeding import get_rng_state, seed_everything, set_rng_state
from tpp.training.trainer import FitResult, Trainer, TrainingError

__all__ = [
    "DEFAULT_MOMENTUM",
    "DEFAULT_WEIGHT_DECAY",
    "FitResult",
    "LRSchedule",
    "MetricsLogger",
    "RunDirectory",
    "Stateful",
    "StepHooks",
    "TensorBoardLogger",
    "Trainer",
    "TrainingError",
    "build_optimizer",
    "device_name",
    "evaluate",
    "get_rng_state",
    "open_tensorboard",
    "parse_lr_schedule",
    "resolve_device",
    "seed_everything",
    "set_lr",
    "set_rng_state",
    "source_git_commit",
    "topk_correct",
]
