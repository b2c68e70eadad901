"""KernOrth + L1 and OrthConv + L1: orthogonality-regularised training of the unpruned model, then L1.

For ``orth_iters`` iterations the whole network is trained with ``orth_weight`` (0.1, the official
``--lw_orth_reg``) times the KernOrth or OrthConv loss; the L1 selection is then made on the weights as
they are at :meth:`prune` time (and checked at construction, so a bad ratio fails before training).
The length of the phase is UNCONFIRMED in the paper: the official TPP code parses ``--orth_reg_iter``
(default 0) without using it; the authors' experiment script for this baseline on ResNet-56 passes
``--orth_reg_iter 50000`` (docs/method.md#baselines), which is the default here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

import torch.nn as nn

from tpp.errors import ConfigError
from tpp.pruning.base import BasePruner
from tpp.pruning.options import check_options, option
from tpp.pruning.presets import SCHEDULE_PRESETS, check_preset, preset_config
from tpp.pruning.registry import pruning_method
from tpp.pruning.regularizers import Orthogonality
from tpp.pruning.schedules import ConstantSchedule

# The official weight of the KernOrth/OrthConv losses (``--lw_orth_reg 0.1``).
ORTH_REG_WEIGHT = 0.1
# Iterations of orthogonality-regularised training before L1 pruning (the authors' script: 50,000).
DEFAULT_ORTH_ITERS = 50_000
# How the OrthConv distance is taken: the official code's stride 2, padding 1 for every layer, or the
# geometry of the Orthogonal CNNs paper (the layer's own stride); see orthogonality.orthconv_geometry.
ORTHCONV_GEOMETRIES = ("official", "textbook")


@dataclass
class OrthThenL1Config:
    """Options of the KernOrth-then-L1 baseline."""

    orth_iters: int = option(DEFAULT_ORTH_ITERS, "iterations of orthogonality-regularised training before L1 pruning",
                             minimum=0)
    orth_weight: float = option(ORTH_REG_WEIGHT, "weight of the orthogonality loss", minimum=0)

    def make_schedule(self) -> ConstantSchedule:
        """``orth_iters`` iterations at strength ``orth_weight``."""
        return ConstantSchedule(self.orth_iters, self.orth_weight)


@dataclass
class OrthConvThenL1Config(OrthThenL1Config):
    """Options of the OrthConv-then-L1 baseline."""

    orthconv_geometry: str = option("textbook", "official (stride 2, padding 1 in every layer, as the official "
                                    "code) or textbook (each layer's stride, as Orthogonal CNNs)",
                                    choices=ORTHCONV_GEOMETRIES)


class OrthRegThenL1Pruner(BasePruner):
    """Orthogonality-regularised training (``orth="kernorth"`` or ``"orthconv"``), then L1 selection and removal.

    ``schedule`` is a preset of :mod:`tpp.pruning.presets`: ``"paper"`` (the options as given) or
    ``"fast"`` (``orth_iters`` / 10).
    """

    schedule_presets = SCHEDULE_PRESETS

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any,
        ratio: float | Mapping[str, float] | str | None = 0.5,
        scope: str = "internal",
        ignored_layers: Iterable[nn.Module | str] | None = None,
        global_ratio: float | None = None,
        orth: str = "kernorth",
        orth_iters: int = DEFAULT_ORTH_ITERS,
        orth_weight: float = ORTH_REG_WEIGHT,
        orthconv_geometry: str = "textbook",
        *,
        importance: Any = None,
        heads: bool = False,
        schedule: str = "paper",
    ) -> None:
        self.orth = orth
        self.options = (OrthConvThenL1Config(orth_iters, orth_weight, orthconv_geometry) if orth == "orthconv"
                        else OrthThenL1Config(orth_iters, orth_weight))
        check_options(self.options)
        self.options = preset_config(self.options, check_preset(schedule))
        if orth != "orthconv" and orthconv_geometry != "textbook":
            raise ConfigError("orthconv_geometry applies to orth='orthconv' only")
        super().__init__(model, example_inputs, ratio, scope, ignored_layers, global_ratio,
                         importance=importance, heads=heads,
                         regularizers=[Orthogonality(orth, official_stride2=orthconv_geometry == "official")],
                         schedule=self.options.make_schedule(), select_at="prune")

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, **asdict(self.options), "orth": self.orth}


@pruning_method("kernorth+l1", regularized=True, description="KernOrth-regularised training, then L1 pruning",
                config=OrthThenL1Config)
def _kernorth_then_l1(model: nn.Module, example_inputs: Any, **options: Any) -> OrthRegThenL1Pruner:
    return OrthRegThenL1Pruner(model, example_inputs, orth="kernorth", **options)


@pruning_method("orthconv+l1", regularized=True, description="OrthConv-regularised training, then L1 pruning",
                config=OrthConvThenL1Config)
def _orthconv_then_l1(model: nn.Module, example_inputs: Any, **options: Any) -> OrthRegThenL1Pruner:
    return OrthRegThenL1Pruner(model, example_inputs, orth="orthconv", **options)

