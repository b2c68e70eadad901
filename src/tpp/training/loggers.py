"""Per-epoch metric sinks for :class:`tpp.training.Trainer` (JSONL lives in :mod:`.rundir`)."""

from __future__ import annotations

import numbers
import os
from typing import Any, Mapping, Protocol, runtime_checkable


@runtime_checkable
class MetricsLogger(Protocol):
    """Anything with ``log_epoch(record)`` and ``close()`` receives one record per epoch."""

    def log_epoch(self, record: Mapping[str, Any]) -> None:
        """Store one epoch's metrics (``epoch``, ``lr``, ``train_loss``, ``test_top1``, ...)."""

    def close(self) -> None:
        """Flush and release resources."""


class TensorBoardLogger:
    """Writes every numeric field of an epoch record as a scalar ``<field>`` at step ``epoch``."""

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the optional `tensorboard` package

        self._writer = SummaryWriter(log_dir=str(log_dir))

    def log_epoch(self, record: Mapping[str, Any]) -> None:
        """Add scalars for the numeric fields of ``record``."""
        step = int(record.get("epoch", 0))
        for key, value in record.items():
            if key != "epoch" and isinstance(value, numbers.Real) and not isinstance(value, bool):
                self._writer.add_scalar(key, float(value), step)
        self._writer.flush()

    def close(self) -> None:
        """Close the event file."""
        self._writer.close()


def open_tensorboard(log_dir: str | os.PathLike[str]) -> tuple[TensorBoardLogger | None, str | None]:
    """``(logger, None)`` if TensorBoard is installed, else ``(None, note)`` explaining the skip."""
    try:
        return TensorBoardLogger(log_dir), None
    except ImportError:
        return None, "TensorBoard logging skipped: install it with `pip install tensorboard`"
