"""L1: one-shot L1-norm filter pruning (Li et al., 2017), the paper's main baseline."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch.nn as nn

from tpp.pruning.base import BasePruner
from tpp.pruning.registry import pruning_method


@pruning_method("l1", regularized=False, description="one-shot L1-norm filter pruning (Li et al., 2017)")
class L1Pruner(BasePruner):
    """The same selection and removal as TPP, with no regularisation phase.

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
        *,
        importance: Any = None,
        heads: bool = False,
    ) -> None:
        super().__init__(model, example_inputs, ratio, scope, ignored_layers, global_ratio,
                         importance=importance, heads=heads)

