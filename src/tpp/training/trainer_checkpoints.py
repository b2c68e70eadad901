"""The :class:`~tpp.training.Trainer`'s checkpoints: what ``last.pt``/``best.pt`` hold, writing
them after an epoch, and restoring a run from them (bit-exact resume).

The checkpoint stores the optimizer and all RNG states captured at the end of the epoch, so a
resumed run continues exactly where the interrupted one stopped (see :mod:`tpp.training.trainer`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from tpp.checkpoints.format import load_checkpoint, load_model_weights, make_payload, save_checkpoint
from tpp.errors import CheckpointError, TPPError
from tpp.training.amp import MixedPrecision
from tpp.training.hooks import Stateful
from tpp.training.loggers import MetricsLogger
from tpp.training.rundir import complete_epoch_outputs
from tpp.training.seeding import get_rng_state, set_rng_state


class TrainerCheckpoints:
    """Checkpoint save and resume, mixed into :class:`~tpp.training.Trainer` (which sets these attributes)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loggers: list[MetricsLogger]
    checkpoint_dir: Path | None
    config: dict[str, Any]
    extra_state: dict[str, Stateful]
    is_main: bool
    precision: MixedPrecision
    start_epoch: int
    global_step: int
    best_top1: float | None
    best_epoch: int | None
    last_top1: float | None
    last_top5: float | None
    stopped: bool
    _record: dict[str, Any] | None

    def checkpoint_payload(self) -> dict[str, Any]:
        """Everything needed to resume after the epochs completed so far, including the last
        epoch's metrics record and which epoch was best, from which a resume repairs
        ``best.pt`` and the metrics log if the process died before writing them."""
        return make_payload(
            self.model,
            optimizer=self.optimizer.state_dict(),
            epoch=self.start_epoch,
            global_step=self.global_step,
            best_top1=self.best_top1,
            best_epoch=self.best_epoch,
            last_top1=self.last_top1,
            last_top5=self.last_top5,
            stopped=self.stopped,
            record=self._record,
            rng=get_rng_state(),
            config=self.config,
            extra={name: obj.state_dict() for name, obj in self.extra_state.items()},
            amp=self.precision.state_dict(),
        )

    def resume(self, path: str | os.PathLike[str], payload: Mapping[str, Any] | None = None) -> int:
        """Restore model, optimizer, counters, extra state and RNGs from ``path``
        (or from ``payload``, the already loaded content of ``path``).

        Returns:
            The number of epochs already completed (the next epoch to run).

        Raises:
            CheckpointError: unreadable file, other architecture, or incompatible optimizer state.
        """
        if payload is None:
            payload = load_checkpoint(path)
        load_model_weights(self.model, payload, path)
        try:
            if "optimizer" in payload:
                self.optimizer.load_state_dict(payload["optimizer"])
            for name, state in (payload.get("extra") or {}).items():
                if name in self.extra_state:
                    self.extra_state[name].load_state_dict(state)
            if payload.get("amp"):
                self.precision.load_state_dict(payload["amp"])
            if "rng" in payload:
                set_rng_state(payload["rng"])
        except TPPError:
            raise
        except Exception as error:  # noqa: BLE001 - each state's loader raises its own types
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            raise CheckpointError(
                f"the training state in {path} does not fit this run ({reason}); "
                "resume with the options of the original run"
            ) from None
        self.start_epoch = int(payload.get("epoch") or 0)
        self.global_step = int(payload.get("global_step") or 0)
        for name in ("best_top1", "best_epoch", "last_top1", "last_top5"):
            setattr(self, name, payload.get(name))
        self.stopped = bool(payload.get("stopped", False))
        self._record = payload.get("record") if isinstance(payload.get("record"), dict) else None
        if self.is_main:  # the process that wrote last.pt may have died before best.pt or the log
            complete_epoch_outputs(payload, self.checkpoint_dir, self.loggers)
        return self.start_epoch

    def _save(self, improved: bool) -> None:
        if self.checkpoint_dir is None:
            return
        try:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CheckpointError(
                f"cannot create checkpoint directory {self.checkpoint_dir}: {error.strerror}"
            ) from None
        payload = self.checkpoint_payload()
        save_checkpoint(self.checkpoint_dir / "last.pt", payload)
        if improved:
            save_checkpoint(self.checkpoint_dir / "best.pt", payload)
