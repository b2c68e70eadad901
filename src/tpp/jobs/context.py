"""Where and how a job runs: the part of a job's set-up that the train and prune jobs share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch.nn as nn

from tpp.training.amp import SpeedOptions


@dataclass
class JobContext:
    """Where and how the job runs.

    ``out``: the run folder (None: write nothing); ``resume``: continue the job found there;
    ``rank``: this process under torchrun (only rank 0 writes or prints); ``loggers``: receive one
    record per epoch (a :class:`~tpp.training.RunDirectory` among them writes ``metrics.jsonl``);
    ``prepare``: turns a bare or wrapped model into its training form (channels_last, DDP; see
    :func:`tpp.distributed.prepare`)."""

    out: Path | None = None
    resume: bool = False
    quiet: bool = False
    rank: int = 0
    print_fn: Callable[[str], None] = print
    loggers: list = field(default_factory=list)
    speed: SpeedOptions = field(default_factory=SpeedOptions)
    prepare: Callable[[nn.Module], nn.Module] | None = None

    def say(self, text: str) -> None:
        """Print on rank 0 unless quiet."""
        if self.rank == 0 and not self.quiet:
            self.print_fn(text)
