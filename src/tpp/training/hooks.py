"""Extension points of the training loop used by pruning methods (see :class:`tpp.training.Trainer`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

import torch


class Stateful(Protocol):
    """An object whose state goes into checkpoints (e.g. a pruner's regularisation strength)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class StepHooks:
    """Optional callbacks run at fixed points of every training step (see module docstring).

    Attributes:
        penalty: returns a scalar tensor added to the cross-entropy loss.
        after_backward: called after ``loss.backward()``, before ``optimizer.step()``.
        after_step: called after ``optimizer.step()``.
        should_stop: checked after each step; True ends the epoch and the run.
        postfix: extra fields shown in the progress bar.
        epoch_end: called with the epoch index after evaluation; its fields join the epoch's record
            (e.g. the mean Jacobian singular value during fine-tuning).
    """

    penalty: Callable[[], torch.Tensor] | None = None
    after_backward: Callable[[], None] | None = None
    after_step: Callable[[], None] | None = None
    should_stop: Callable[[], bool] | None = None
    postfix: Callable[[], Mapping[str, Any]] | None = None
    epoch_end: Callable[[int], Mapping[str, Any]] | None = None
