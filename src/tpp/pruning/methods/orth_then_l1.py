"""KernOrth + L1 and OrthConv + L1: orthogonality-regularised training of the unpruned model, then L1.

For ``orth_iters`` iterations the whole network is trained with ``orth_weight`` (0.1, the official
``--lw_orth_reg``) times the KernOrth or OrthConv loss; the L1 selection is then made on the weights as
they are at :meth:`prune` time (and checked at construction, so a bad ratio fails before training).
The length of the phase is UNCONFIRMED in the paper: the official TPP code parses ``--orth_reg_iter``
(default 0) without using it; the authors' experiment script for this baseline on ResNet-56 passes
``--orth_reg_iter 50000`` (docs/method.md#baselines), which is the default here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from tpp.errors import ConfigError
from tpp.pruning.configured import Composition, ConfiguredPruner
from tpp.pruning.options import option
from tpp.pruning.registry import pruning_method
from tpp.pruning.regularizers import Orthogonality
from tpp.pruning.schedules import ConstantSchedule, Schedule

# The official weight of the KernOrth/OrthConv losses (``--lw_orth_reg 0.1``).
ORTH_REG_WEIGHT = 0.1
# Iterations of orthogonality-regularised training before L1 pruning (the authors' script: 50,000).
DEFAULT_ORTH_ITERS = 50_000
# How the OrthConv distance is taken: the official code's stride 2, padding 1 for every layer, or the
# geometry of the Orthogonal CNNs paper (the layer's own stride); see orthogonality.orthconv_geometry.
ORTHCONV_GEOMETRIES = ("official", "textbook")


def orthconv_geometry_option() -> Any:
    """The ``orthconv_geometry`` option, declared once for OrthConv + L1 and L1 + OrthConv."""
    return option(
        "textbook",
        "official (stride 2, padding 1 in every layer, as the official code) or textbook "
        "(each layer's stride, as Orthogonal CNNs)",
        choices=ORTHCONV_GEOMETRIES,
    )


@dataclass
class OrthThenL1Config:
    """Options of the KernOrth-then-L1 baseline."""

    orth_iters: int = option(
        DEFAULT_ORTH_ITERS, "iterations of orthogonality-regularised training before L1 pruning", minimum=0
    )
    orth_weight: float = option(ORTH_REG_WEIGHT, "weight of the orthogonality loss", minimum=0)

    def make_schedule(self) -> ConstantSchedule:
        """``orth_iters`` iterations at strength ``orth_weight``."""
        return ConstantSchedule(self.orth_iters, self.orth_weight)


@dataclass
class OrthConvThenL1Config(OrthThenL1Config):
    """Options of the OrthConv-then-L1 baseline."""

    orthconv_geometry: str = orthconv_geometry_option()


class OrthThenL1Pruner(ConfiguredPruner):
    """Orthogonality-regularised training (the loss :attr:`orth` names), then L1 selection and removal.

    The options are the subclass's :attr:`Config` fields, as keywords; ``schedule`` is a preset of
    :mod:`tpp.pruning.presets`: ``"paper"`` (the options as given) or ``"fast"`` (``orth_iters`` / 10).
    """

    Config = OrthThenL1Config
    orth: str = "kernorth"  # the orthogonality loss: fixed by each subclass

    def _compose(self, schedule: Schedule | None) -> Composition:
        official = getattr(self.options, "orthconv_geometry", None) == "official"  # KernOrth has no geometry
        return ([Orthogonality(self.orth, official_stride2=official)], self.options.make_schedule(), "prune")

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "orth": self.orth}


@pruning_method("kernorth+l1", regularized=True, description="KernOrth-regularised training, then L1 pruning")
class KernOrthThenL1Pruner(OrthThenL1Pruner):
    """KernOrth-regularised training (Xie et al., 2017), then L1: the options are :class:`OrthThenL1Config`'s."""

    Config = OrthThenL1Config
    orth = "kernorth"


@pruning_method("orthconv+l1", regularized=True, description="OrthConv-regularised training, then L1 pruning")
class OrthConvThenL1Pruner(OrthThenL1Pruner):
    """OrthConv-regularised training (Wang et al., 2020), then L1: the options are :class:`OrthConvThenL1Config`'s."""

    Config = OrthConvThenL1Config
    orth = "orthconv"


_BY_ORTH = {"kernorth": KernOrthThenL1Pruner, "orthconv": OrthConvThenL1Pruner}


def OrthRegThenL1Pruner(
    model: nn.Module,
    example_inputs: Any,
    *args: Any,
    orth: str = "kernorth",  # noqa: N802
    **kwargs: Any,
) -> OrthThenL1Pruner:
    """The orthogonality + L1 baseline by the name of its loss (``orth="kernorth"`` or ``"orthconv"``):
    a :class:`KernOrthThenL1Pruner` or an :class:`OrthConvThenL1Pruner` built with the other arguments.

    Kept under the name these baselines had when one class held both.

    Raises:
        ConfigError: an unknown ``orth``, or an option that loss's baseline does not declare.
    """
    if orth not in _BY_ORTH:
        raise ConfigError(f"orth must be one of {', '.join(_BY_ORTH)}, got {orth!r}")
    return _BY_ORTH[orth](model, example_inputs, *args, **kwargs)
