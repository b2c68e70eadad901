"""TPP with the adaptive schedule (beyond the paper): the regularisation ends when it has done its work.

The penalties are TPP's (Eq. 3 and Eq. 5, the official weights); only the schedule differs: lambda
grows, ever faster, only while the pruned channels shrink slower than a pace, each unit is zeroed once its pruned channels are
below ``target`` relative to the kept ones (magnitude and gram coupling) or stop shrinking at the
ceiling, and the phase ends a window of ``patience`` checks after the last unit is done
(:class:`tpp.pruning.adaptive_schedule.AdaptiveSchedule`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tpp.pruning.adaptive_schedule import AdaptiveSchedule
from tpp.pruning.methods.tpp import TPPPruner
from tpp.pruning.options import option
from tpp.pruning.registry import pruning_method


@dataclass
class TPPAdaptiveConfig:
    """Options of TPP with the adaptive schedule."""

    reg_step: float = option(
        1e-4,
        "initial growth of lambda every reg_interval iterations (it doubles at every "
        "check while the pruned channels shrink slower than the pace)",
        minimum=0,
        above=True,
    )
    halving_iters: int = option(
        2000,
        "the pace: lambda grows only while the pruned/kept ratio halves more slowly than every this many iterations",
        minimum=1,
    )
    reg_interval: int = option(10, "iterations between lambda updates", minimum=1)
    reg_ceiling: float = option(1.0, "lambda stops growing here", minimum=0, above=True)
    target: float = option(
        1e-3, "pruned/kept magnitude and coupling below which a unit is done (GReg: 1/1000)", minimum=0, above=True
    )
    check_interval: int = option(50, "iterations between progress checks", minimum=1)
    patience: int = option(
        5,
        "checks per window: at the ceiling a unit whose ratio shrinks by less than "
        "min_progress over a window is done; the phase ends a window after the last unit is done",
        minimum=1,
    )
    min_progress: float = option(
        0.5, "the fraction a window at the ceiling must shrink the ratio by (below 1)", minimum=0
    )
    max_iterations: int = option(
        110_000, "the regularisation never runs longer (default: the official schedule's)", minimum=1
    )
    gram_weight: float = option(1000.0, "weight of the gram term of Eq. 3 (0 disables it)", minimum=0)
    bn_reg: bool = option(True, "growing L2 on BatchNorm gamma/beta of the pruned channels")
    weight_reg: bool = option(True, "growing L2 on the pruned filters and biases")

    def make_schedule(self) -> AdaptiveSchedule:
        """The adaptive schedule these options describe (``max_iterations`` is its upper bound)."""
        return AdaptiveSchedule(
            self.reg_step,
            self.reg_interval,
            self.reg_ceiling,
            target=self.target,
            check_interval=self.check_interval,
            patience=self.patience,
            min_progress=self.min_progress,
            halving_iters=self.halving_iters,
            max_iterations=self.max_iterations,
        )


@pruning_method(
    "tpp-adaptive",
    regularized=True,
    description="TPP whose regularisation ends when the pruned channels are gone (adaptive schedule)",
)
class TPPAdaptivePruner(TPPPruner):
    """A :class:`TPPPruner` on the adaptive schedule: its options are :class:`TPPAdaptiveConfig`'s, as keywords.

    TPP's terms are weighted by ``gram_weight``, ``bn_reg`` and ``weight_reg`` as in TPP; the gram target
    and pace are TPP's defaults. ``schedule="fast"`` makes lambda grow 10x faster
    (:mod:`tpp.pruning.presets`); ``max_iterations`` stays the upper bound.
    """

    Config = TPPAdaptiveConfig
    accepts_schedule = False  # its schedule is the adaptive one; another would make it plain TPP


# the name this method had as a factory function (tests/test_hostile_pruner.py imports it)
tpp_adaptive = TPPAdaptivePruner
