"""The training job, shared by ``tpp train`` and the recipes' base models: SGD on an LR schedule,
checkpointed every epoch into the run folder, resumable from ``last.pt``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
import torch.nn as nn

from tpp.jobs.context import JobContext
from tpp.training import DEFAULT_MOMENTUM, DEFAULT_WEIGHT_DECAY, FitResult, Trainer, build_optimizer, parse_lr_schedule


@dataclass
class TrainJobConfig:
    """How to train: epochs, the LR schedule (paper notation, e.g. ``"0:0.01,60:0.001"``), SGD settings."""

    epochs: int
    lr: str
    momentum: float = DEFAULT_MOMENTUM
    weight_decay: float = DEFAULT_WEIGHT_DECAY


def run_train_job(
    model: nn.Module,
    train_loader: Iterable,
    test_loader: Iterable,
    config: TrainJobConfig,
    context: JobContext,
    *,
    device: torch.device | str | None = None,
    run_config: Mapping[str, Any] | None = None,
    resume_from: tuple[Path, Mapping[str, Any]] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> FitResult:
    """Train ``model``; checkpoints go to ``context.out`` (``last.pt`` every epoch, ``best.pt``).

    ``resume_from`` is ``(path, payload)`` of the ``last.pt`` to continue from; the metrics of later
    epochs (if any were logged before a kill) are dropped from the run folder. ``on_start(epochs done)``
    runs once the run is set up and before the first step (e.g. to write the run's config)."""
    schedule = parse_lr_schedule(config.lr)
    optimizer = build_optimizer(model, schedule.lr_at(0, config.epochs), config.momentum, config.weight_decay)
    trainer = Trainer(
        model,
        optimizer,
        train_loader,
        test_loader,
        epochs=config.epochs,
        schedule=schedule,
        device=device,
        loggers=context.loggers,
        checkpoint_dir=context.out,
        config=dict(run_config or {}),
        quiet=context.quiet,
        rank=context.rank,
        print_fn=context.print_fn,
        speed=context.speed,
    )
    done = 0
    if resume_from is not None:
        done = trainer.resume(*resume_from)
        for logger in context.loggers:
            if hasattr(logger, "truncate_metrics"):
                logger.truncate_metrics(done)
    if on_start is not None:
        on_start(done)
    return trainer.fit()
