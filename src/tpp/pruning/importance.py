"""Importance criteria: a score per channel of a unit; the lowest-scored channels are pruned.

An importance is any callable ``importance(unit) -> Tensor[unit.channels]``. :class:`L1Importance` is
the paper's criterion; :class:`TorchPruningImportance` wraps any Torch-Pruning ``Importance`` (which
scores a dependency group), so that e.g. ``tp.importance.TaylorImportance()`` or
``tp.importance.GroupMagnitudeImportance(p=2)`` choose the channels that TPP then regularises.
Data-driven criteria (activations, first-order Taylor) are in :mod:`tpp.pruning.calibration`;
:func:`tpp.pruning.calibration.make_importance` builds any of them by name.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from tpp.errors import ConfigError
from tpp.pruning.selection import filter_scores
from tpp.pruning.units import PruningUnit

Importance = Callable[[PruningUnit], torch.Tensor]


class L1Importance:
    """Per channel, the mean ``|w|`` of its filters summed over the unit's layers (Li et al., 2017; the
    same ranking as the L1 norm within a layer, as the official code uses)."""

    def __call__(self, unit: PruningUnit) -> torch.Tensor:
        return filter_scores([(m.module.weight.movedim(m.dim, 0), m.roots, m.local) for m in unit.rows], unit.channels)

    def __repr__(self) -> str:
        return "L1Importance()"


class TorchPruningImportance:
    """Adapts a Torch-Pruning importance (``tp.importance.*``), which scores a dependency group."""

    def __init__(self, importance: Any) -> None:
        self.importance = importance

    def __call__(self, unit: PruningUnit) -> torch.Tensor:
        if unit.group is None:  # whole attention heads (tpp.pruning.heads) have no Torch-Pruning group
            return L1Importance()(unit)
        scores = self.importance(unit.group)
        if scores is None or len(scores) != unit.channels:
            raise ConfigError(
                f"{type(self.importance).__name__} gave no score per channel for {unit.name}; "
                "use an importance that scores every channel of a group"
            )
        return torch.as_tensor(scores).detach().float().cpu()

    def __repr__(self) -> str:
        return f"TorchPruningImportance({self.importance!r})"


def as_importance(importance: Any) -> Importance:
    """``None`` -> :class:`L1Importance`; a Torch-Pruning ``Importance`` -> adapted; a callable as is."""
    if importance is None:
        return L1Importance()
    if type(importance).__module__.startswith("torch_pruning"):
        return TorchPruningImportance(importance)
    if callable(importance):
        return importance
    raise ConfigError(f"importance must be callable (unit -> scores), got {type(importance).__name__}")
