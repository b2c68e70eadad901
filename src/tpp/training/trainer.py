"""The epoch loop: SGD on cross-entropy with hooks for pruning regularisers, evaluation every
epoch, best/last checkpoints and bit-exact resume.

Per training step, in this order::

    loss = CE(model(x), y) [+ hooks.penalty()]      # NaN/inf -> TrainingError
    loss.backward(); hooks.after_backward()          # gradient-space regularisation
    optimizer.step(); hooks.after_step()
    if hooks.should_stop(): finish this epoch early and stop

With ``SpeedOptions(amp=...)`` the forward pass and CE run under autocast, and with fp16 the
backward is scaled and the gradients unscaled *before* ``after_backward`` (see
:mod:`tpp.training.amp`), so gradient-space regularisers always see true gradients.

Multi-process (DDP) runs: pass the DDP-wrapped model and ``rank``; the epoch's training loss and
accuracy are summed over ranks (so they equal a single process's numbers), every rank evaluates
the whole test set, and only rank 0 writes checkpoints, logs and prints.

Exact resume relies on three things: the LR is a function of the epoch (set at its start), the
loader's ``set_epoch(epoch)`` makes each epoch's batches a pure function of (seed, epoch), and
the checkpoint stores the optimizer and all RNG states captured at the end of the epoch.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from tpp.distributed import all_reduce_sum
from tpp.errors import TPPError
from tpp.training.amp import CompiledForward, MixedPrecision, SpeedOptions, to_channels_last
from tpp.training.evaluation import evaluate, flat_predictions, topk_correct
from tpp.training.hooks import Stateful, StepHooks
from tpp.training.loggers import MetricsLogger
from tpp.training.optim import set_lr
from tpp.training.schedule import LRSchedule
from tpp.training.trainer_checkpoints import TrainerCheckpoints
from tpp.util.atomic import json_plain, remove_stale_temporaries
from tpp.util.inputs import call_without_cache, logits_of
from tpp.util.modules import unwrap


class TrainingError(TPPError):
    """Training cannot continue (e.g. the loss became NaN or infinite)."""


@dataclass
class FitResult:
    """Outcome of :meth:`Trainer.fit` (accuracies in percent, None without a test loader)."""

    best_top1: float | None
    last_top1: float | None
    last_top5: float | None
    epochs_completed: int
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer(TrainerCheckpoints):
    """Trains ``model`` for ``epochs`` epochs following ``schedule``.

    Checkpoint writing and :meth:`resume` come from :class:`~tpp.training.trainer_checkpoints.TrainerCheckpoints`.

    Args:
        model: the network (may be DataParallel/DDP-wrapped; checkpoints hold the bare weights).
        optimizer: typically :func:`tpp.training.build_optimizer`.
        train_loader: yields ``(inputs, targets)``; ``set_epoch(epoch)`` is called if present.
        test_loader: evaluated after every epoch; None skips evaluation and ``best.pt``.
        epochs: total number of epochs of the run (also the horizon of relative schedules).
        schedule: learning rate per epoch, applied at the start of each epoch.
        device: where batches are moved (default: the model's device).
        hooks: per-step callbacks for regularisers/pruners.
        loggers: receive one record per epoch (e.g. a :class:`RunDirectory`).
        checkpoint_dir: if given, ``last.pt`` is written every epoch and ``best.pt`` on improvement.
        config: resolved configuration stored in checkpoints.
        extra_state: named objects with ``state_dict``/``load_state_dict`` saved in checkpoints.
        quiet: no progress bars and no per-epoch lines.
        rank: only rank 0 writes checkpoints, logs and prints (multi-process training).
        print_fn: where per-epoch summary lines go.
        speed: mixed precision, channels_last and torch.compile (:class:`SpeedOptions`).

    Attributes:
        start_epoch: epochs completed so far, i.e. the next epoch :meth:`fit` runs.
        global_step: optimizer steps taken so far.
        precision: the :class:`MixedPrecision` in use (autocast dtype and fp16 loss scaler).
        best_top1, last_top1, last_top5: test accuracies in percent (None before any evaluation).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: Iterable,
        test_loader: Iterable | None = None,
        *,
        epochs: int,
        schedule: LRSchedule,
        device: torch.device | str | None = None,
        hooks: StepHooks | None = None,
        loggers: Sequence[MetricsLogger] = (),
        checkpoint_dir: str | os.PathLike[str] | None = None,
        config: Mapping[str, Any] | None = None,
        extra_state: Mapping[str, Stateful] | None = None,
        quiet: bool = False,
        rank: int = 0,
        print_fn: Callable[[str], None] = print,
        speed: SpeedOptions | None = None,
    ) -> None:
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        self.model = model
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.test_loader = test_loader
        self.epochs = int(epochs)
        self.schedule = schedule
        self.device = (
            torch.device(device)
            if device is not None
            else next((p.device for p in model.parameters()), torch.device("cpu"))
        )
        self.hooks = hooks or StepHooks()
        self.loggers = list(loggers)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.config = json_plain(dict(config or {}))
        self.extra_state = dict(extra_state or {})
        self.quiet = quiet
        self.rank = int(rank)
        self.is_main = self.rank == 0
        self.print_fn = print_fn
        self.speed = speed or SpeedOptions()
        self.precision = MixedPrecision.from_mode(self.speed.amp, self.device)
        if self.speed.channels_last and not isinstance(model, nn.parallel.DistributedDataParallel):
            # a DDP model must be converted before wrapping (tpp.distributed.prepare)
            unwrap(model).to(memory_format=torch.channels_last)
        self._forward: Callable[[torch.Tensor], torch.Tensor] = model
        if self.checkpoint_dir is not None and self.is_main:
            remove_stale_temporaries(self.checkpoint_dir, ("last.pt", "best.pt"))
        self.start_epoch = 0
        self.global_step = 0
        self.best_top1: float | None = None
        self.best_epoch: int | None = None
        self.last_top1: float | None = None
        self.last_top5: float | None = None
        self.stopped = False  # a hook ended the run early; a resumed run must not train on
        self._record: dict[str, Any] | None = None  # the last finished epoch's metrics record

    # ----------------------------------------------------------------------------- training
    def _bar(self, epoch: int, total: int | None) -> tqdm:
        disabled = self.quiet or not self.is_main or not sys.stderr.isatty()
        return tqdm(
            total=total, desc=f"epoch {epoch + 1}/{self.epochs}", leave=False, dynamic_ncols=True, disable=disabled
        )

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the training loader at the current learning rate.

        Returns:
            ``{"train_loss", "train_top1", "train_penalty"?, "steps", "stopped"}``.

        Raises:
            TrainingError: the loss is NaN or infinite.
        """
        hooks, model, device, precision = self.hooks, self.model, self.device, self.precision
        model.train()
        loss_sum, penalty_sum, seen, steps, stopped = 0.0, 0.0, 0, 0, False
        correct = torch.zeros((), dtype=torch.int64, device=device)
        total = len(self.train_loader) if hasattr(self.train_loader, "__len__") else None
        with self._bar(epoch, total) as bar:
            for inputs, targets in self.train_loader:
                inputs = inputs.to(device, non_blocking=True)
                targets = targets.to(device, non_blocking=True)
                if self.speed.channels_last:
                    inputs = to_channels_last(inputs)
                with precision.autocast():
                    # a ModelOutput's logits; a language model's [B, T, V] are B * T next-token predictions
                    logits, targets = flat_predictions(logits_of(call_without_cache(self._forward, inputs)), targets)
                    loss = F.cross_entropy(logits, targets)
                ce_value = loss.item()
                if hooks.penalty is not None:  # in float32: the gram target is sensitive to rounding
                    penalty = hooks.penalty()
                    penalty_sum += float(penalty.detach()) * targets.shape[0]
                    loss = loss + penalty
                value = loss.item() if hooks.penalty is not None else ce_value
                if not math.isfinite(value):
                    raise TrainingError(
                        f"the loss became {value} at epoch {epoch} step {steps} (lr "
                        f"{self.optimizer.param_groups[0]['lr']:g}); training diverged - lower the learning rate"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                precision.backward(loss, self.optimizer)  # unscaled .grad from here on
                if hooks.after_backward is not None:
                    hooks.after_backward()
                precision.step(self.optimizer)
                if hooks.after_step is not None:
                    hooks.after_step()
                self.global_step += 1
                steps += 1
                loss_sum += ce_value * targets.shape[0]
                seen += targets.shape[0]
                correct += topk_correct(logits.detach(), targets, (1,))[0]
                bar.update(1)
                if steps % 10 == 0 and not bar.disable:
                    info = {"loss": f"{loss_sum / seen:.4f}", "lr": f"{self.optimizer.param_groups[0]['lr']:g}"}
                    if hooks.postfix is not None:
                        info.update(hooks.postfix())
                    bar.set_postfix(info, refresh=False)
                if hooks.should_stop is not None and hooks.should_stop():
                    stopped = True
                    break
        # one all-reduce per epoch: the logged numbers cover the whole global batch, not rank 0's shard
        totals = all_reduce_sum(
            torch.tensor([loss_sum, penalty_sum, seen, correct.item()], dtype=torch.float64, device=device)
        ).tolist()
        loss_sum, penalty_sum, seen = totals[0], totals[1], int(totals[2])
        stats: dict[str, Any] = {
            "train_loss": loss_sum / max(seen, 1),
            "train_top1": 100.0 * totals[3] / max(seen, 1),
            "steps": steps,
            "stopped": stopped,
        }
        if hooks.penalty is not None:
            stats["train_penalty"] = penalty_sum / max(seen, 1)
        return stats

    def fit(self) -> FitResult:
        """Run epochs ``start_epoch .. epochs-1`` (start_epoch > 0 after :meth:`resume`)."""
        compiled = CompiledForward(self.model, warn=self.is_main) if self.speed.compile else None
        self._forward = compiled or self.model
        try:
            return self._fit()
        finally:
            if compiled is not None:  # eager again: the pruner traces this module after training
                compiled.restore()
            self._forward = self.model

    def _fit(self) -> FitResult:
        history: list[dict[str, Any]] = []
        stopped = self.stopped
        for epoch in range(self.start_epoch, self.epochs if not stopped else self.start_epoch):
            started = time.perf_counter()
            lr = self.schedule.lr_at(epoch, self.epochs)
            set_lr(self.optimizer, lr)
            if hasattr(self.train_loader, "set_epoch"):
                self.train_loader.set_epoch(epoch)
            stats = self.train_epoch(epoch)
            stopped = bool(stats.pop("stopped"))
            record: dict[str, Any] = {"epoch": epoch, "lr": lr, **stats}
            improved = False
            if self.test_loader is not None:
                # the bare module: evaluation needs no DDP collective (every rank sees the full test set)
                test = evaluate(unwrap(self.model), self.test_loader, self.device)
                self.last_top1, self.last_top5 = test["top1"], test["top5"]
                improved = self.best_top1 is None or test["top1"] > self.best_top1
                if improved:
                    self.best_top1, self.best_epoch = test["top1"], epoch
                record.update(
                    test_top1=test["top1"],
                    test_top5=test["top5"],
                    test_loss=test["loss"],
                    **({"test_perplexity": test["perplexity"]} if "perplexity" in test else {}),
                )
            if self.hooks.epoch_end is not None:
                record.update(self.hooks.epoch_end(epoch))
            record.update(best_top1=self.best_top1, step=self.global_step, time=time.perf_counter() - started)
            self.start_epoch, self.stopped, self._record = epoch + 1, stopped, json_plain(record)
            if self.is_main:
                # last.pt first: it commits the epoch, and a resume rebuilds what follows from it
                self._save(improved)
                for logger in self.loggers:
                    logger.log_epoch(record)
                if not self.quiet:
                    self.print_fn(self._summary(record))
            history.append(record)
            if stopped:
                break
        return FitResult(self.best_top1, self.last_top1, self.last_top5, self.start_epoch, stopped, history)

    def _summary(self, r: Mapping[str, Any]) -> str:
        text = f"epoch {r['epoch'] + 1}/{self.epochs}  lr {r['lr']:g}  train loss {r['train_loss']:.4f} top1 {r['train_top1']:.2f}"
        if "train_penalty" in r:
            text += f" penalty {r['train_penalty']:.4g}"
        split = getattr(self.test_loader, "split", "test")  # "valid": the held-out data settings are chosen on
        if "test_perplexity" in r:
            text += f"  {split} perplexity {r['test_perplexity']:.3f} (next-token top1 {r['test_top1']:.2f})"
        elif "test_top1" in r:
            text += f"  {split} top1 {r['test_top1']:.2f} top5 {r['test_top5']:.2f}  best {r['best_top1']:.2f}"
        return text + f"  ({r['time']:.1f}s)"
