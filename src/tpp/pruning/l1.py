"""One-shot L1-norm filter pruning (Li et al., 2017): the paper's main baseline (digest §4)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch
import torch.nn as nn

from tpp.pruning.tpp_pruner import TPPPruner


class L1Pruner(TPPPruner):
    """Same selection and removal as :class:`TPPPruner`, with no regularisation phase.

    ``done`` is True from the start, so the usual loop ends at once; :meth:`prune` removes the
    smallest-L1 filters immediately.
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any,
        ratio: float | Mapping[str, float] | str | None = 0.5,
        scope: str = "internal",
        ignored_layers: Iterable[nn.Module | str] | None = None,
        global_ratio: float | None = None,
        **_ignored: Any,
    ) -> None:
        super().__init__(model, example_inputs, ratio=ratio, scope=scope, ignored_layers=ignored_layers,
                         global_ratio=global_ratio, stabilize_iters=0, gram_weight=0.0)

    @property
    def phase(self) -> str:
        return "done"

    def penalty(self) -> torch.Tensor:
        return torch.zeros(())

    def regularize(self) -> None:
        return None

    def step(self) -> None:
        return None
