"""KernOrth + L1 and OrthConv + L1: orthogonality-regularised training of the unpruned model, then L1.

For ``orth_iters`` iterations the whole network is trained with ``orth_weight`` (0.1, the official
``--lw_orth_reg``) times the KernOrth or OrthConv loss; the L1 selection is then made on the weights as
they are at :meth:`prune` time (and checked at construction, so a bad ratio fails before training).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

import torch.nn as nn

from tpp.pruning.base import BasePruner
from tpp.pruning.options import check_options, option
from tpp.pruning.registry import Method, register_method
from tpp.pruning.regularizers import Orthogonality
from tpp.pruning.schedules import ConstantSchedule

# The official weight of the KernOrth/OrthConv losses (``--lw_orth_reg 0.1``).
ORTH_REG_WEIGHT = 0.1
# Length of the orthogonality-regularised phase when neither ``orth_iters`` nor ``stabilize_iters`` is
# given: TPP's stabilisation length on CIFAR.
DEFAULT_ORTH_ITERS = 10_000


@dataclass
class OrthThenL1Config:
    """Options of the orthogonality-then-L1 baselines."""

    orth_iters: int = option(DEFAULT_ORTH_ITERS, "iterations of orthogonality-regularised training before L1 pruning",
                             minimum=0)
    orth_weight: float = option(ORTH_REG_WEIGHT, "weight of the orthogonality loss", minimum=0)


class OrthRegThenL1Pruner(BasePruner):
    """Orthogonality-regularised training (``orth="kernorth"`` or ``"orthconv"``), then L1 selection and removal.

    ``stabilize_iters``, when given and ``orth_iters`` is not, sets the length of the phase (the single
    schedule length older jobs forwarded)."""

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any,
        ratio: float | Mapping[str, float] | str | None = 0.5,
        scope: str = "internal",
        ignored_layers: Iterable[nn.Module | str] | None = None,
        global_ratio: float | None = None,
        orth: str = "kernorth",
        orth_iters: int | None = None,
        stabilize_iters: int | None = None,
        orth_weight: float = ORTH_REG_WEIGHT,
        official_stride2: bool = False,
        *,
        importance: Any = None,
    ) -> None:
        if orth_iters is None:
            orth_iters = DEFAULT_ORTH_ITERS if stabilize_iters is None else stabilize_iters
        self.orth, self.official_stride2 = orth, official_stride2
        self.options = OrthThenL1Config(orth_iters, orth_weight)
        check_options(self.options)
        super().__init__(model, example_inputs, ratio, scope, ignored_layers, global_ratio, importance=importance,
                         regularizers=[Orthogonality(orth, official_stride2)],
                         schedule=ConstantSchedule(orth_iters, orth_weight), select_at="prune")

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, **asdict(self.options), "orth": self.orth, "official_stride2": self.official_stride2}


def _kernorth_then_l1(model: nn.Module, example_inputs: Any, **options: Any) -> OrthRegThenL1Pruner:
    return OrthRegThenL1Pruner(model, example_inputs, orth="kernorth", **options)


def _orthconv_then_l1(model: nn.Module, example_inputs: Any, **options: Any) -> OrthRegThenL1Pruner:
    return OrthRegThenL1Pruner(model, example_inputs, orth="orthconv", **options)


register_method(Method("kernorth+l1", _kernorth_then_l1, True, "KernOrth-regularised training, then L1 pruning",
                       config=OrthThenL1Config))
register_method(Method("orthconv+l1", _orthconv_then_l1, True, "OrthConv-regularised training, then L1 pruning",
                       config=OrthThenL1Config))
