"""GReg-1 (Wang et al., ICLR 2021): a growing L2 penalty on the L1-picked filters, then removal.

TPP without the gram term, the BatchNorm and bias terms and the layer-wise zero-out (the pruned
filters are zeroed only at removal), on TPP's growing schedule. GReg's early stop on a kept/pruned
magnitude ratio is not implemented: the phase always runs to the ceiling plus ``stabilize_iters``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpp.pruning.configured import Composition, ConfiguredPruner
from tpp.pruning.methods.tpp import GrowthConfig
from tpp.pruning.registry import pruning_method
from tpp.pruning.regularizers import GrowingL2
from tpp.pruning.schedules import GrowingSchedule, Schedule


@dataclass
class GReg1Config(GrowthConfig):
    """GReg-1's options: those of TPP's growing schedule, with its defaults."""

    def make_schedule(self) -> GrowingSchedule:
        """TPP's growing schedule without the layer-wise zero-out."""
        return GrowingSchedule(
            self.reg_step, self.reg_interval, self.reg_ceiling, self.stabilize_iters, zero_out_interval=None
        )


@pruning_method("greg1", regularized=True, description="GReg-1: growing L2 on the pruned filters (Wang et al., 2021b)")
class GReg1Pruner(ConfiguredPruner):
    """L1-picked filters get ``W.grad += lambda * W`` on a growing schedule, then are removed.

    The options are :class:`GReg1Config`'s, as keywords; ``schedule`` is a preset of
    :mod:`tpp.pruning.presets`: ``"paper"`` (the options as given) or ``"fast"`` (``reg_step`` x10,
    ``stabilize_iters`` / 10).
    """

    Config = GReg1Config

    def _compose(self, schedule: Schedule | None) -> Composition:
        return [GrowingL2("filter_weights")], self.options.make_schedule(), "start"
