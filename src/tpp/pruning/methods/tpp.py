"""TPP: Trainability Preserving Pruning (Wang & Fu, ICLR 2023).

L1 picks the channels once (docs/method.md#selection); while training, the gram entries that tie them to the kept
filters are pushed to zero (Eq. 3, weight ``gram_weight``) and a growing L2 pulls their filters,
biases and BatchNorm gamma/beta to zero (Eq. 5); removal follows. Defaults are the official code's
CIFAR settings: lambda grows by 1e-4 every 10 iterations to 1, then 10,000 stabilisation iterations
with the layer-wise zero-out, ``lw_opp`` 1000.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpp.pruning.configured import Composition, ConfiguredPruner
from tpp.pruning.options import option
from tpp.pruning.penalties import GRAM_TARGETS
from tpp.pruning.registry import pruning_method
from tpp.pruning.regularizers import GramDecorrelation, GrowingL2
from tpp.pruning.schedules import GrowingSchedule, Schedule


@dataclass
class GrowthConfig:
    """The options of TPP's growing schedule (the official defaults), shared with GReg-1; they come first."""

    reg_step: float = option(1e-4, "lambda grows by this every reg_interval iterations", minimum=0, above=True)
    reg_interval: int = option(10, "iterations between lambda updates", minimum=1)
    reg_ceiling: float = option(1.0, "lambda stops growing here", minimum=0, above=True)
    stabilize_iters: int = option(10_000, "iterations at the ceiling before removal", minimum=0)


@dataclass
class TPPConfig(GrowthConfig):
    """TPP's options (the official defaults): the growing schedule's, then these."""

    zero_out_interval: int = option(100, "iterations between the layer-wise zero-outs of stabilisation", minimum=0)
    gram_weight: float = option(1000.0, "weight of the gram term of Eq. 3 (0 disables it)", minimum=0)
    bn_reg: bool = option(True, "growing L2 on BatchNorm gamma/beta of the pruned channels")
    weight_reg: bool = option(True, "growing L2 on the pruned filters and biases")
    gram_target: str = option(
        "decorrelate", "decorrelate (TPP) or kernorth (ablation: identity target)", choices=GRAM_TARGETS
    )
    gram_every: int = option(
        1,
        "compute the gram term every k-th iteration, k times as strong (1: every "
        "iteration, as the paper; larger saves its cost on small batches)",
        minimum=1,
    )

    def make_schedule(self) -> GrowingSchedule:
        """The official growing schedule these options describe."""
        return GrowingSchedule(
            self.reg_step, self.reg_interval, self.reg_ceiling, self.stabilize_iters, self.zero_out_interval
        )


@pruning_method("tpp", regularized=True, description="Trainability Preserving Pruning (Wang & Fu, 2023)")
class TPPPruner(ConfiguredPruner):
    """Selects filters by L1 norm, regularises them towards de-correlation and zero, then removes them.

    Args:
        model: the network (a DataParallel/DDP wrapper is fine).
        example_inputs: a batch the model accepts (tensor, tuple of positional or dict of keyword
            arguments), used to trace channel dependencies and to check the removal.
        ratio: fraction of filters to prune per layer: a float, or ``{fnmatch pattern: ratio}`` on
            module names (``{"*layer*.conv1": 0.9}``), or the text ``"*layer*.conv1:0.9"``.
        scope: ``"internal"`` (the paper: channels not tied to residual adds or other layers) or
            ``"all"`` (every dependency group that can be removed exactly).
        ignored_layers: modules or module-name patterns never pruned (classifiers are always kept).
        global_ratio: if given, rank all units' channels network-wide and prune this fraction.
        importance: how channels are chosen; ``None`` is L1 (see :class:`BasePruner`).
        heads: also prune whole attention heads (see :class:`BasePruner`).
        schedule: ``"paper"`` (the default: the official schedule built from ``reg_*``,
            ``stabilize_iters`` and ``zero_out_interval``, 110,000 iterations at the defaults),
            ``"fast"`` (the same options shortened tenfold: ``reg_step`` x10, ``stabilize_iters`` / 10;
            :mod:`tpp.pruning.presets`), or a :class:`~tpp.pruning.schedules.Schedule` to use instead
            (e.g. the adaptive schedule).
        **options: keyword-only, the fields of :class:`TPPConfig` (each documented there with its
            default and bound): ``reg_step``, ``reg_interval``, ``reg_ceiling``, ``stabilize_iters``,
            ``zero_out_interval``, ``gram_weight``, ``bn_reg``, ``weight_reg``, ``gram_target``, ``gram_every``.
    """

    Config = TPPConfig
    accepts_schedule = True

    def _compose(self, schedule: Schedule | None) -> Composition:
        options = self.options
        if schedule is None:
            schedule = options.make_schedule()
        # a subclass's config may declare only TPP's term weights (tpp-adaptive): the gram target and
        # pace it does not declare keep TPP's defaults
        target = getattr(options, "gram_target", TPPConfig.gram_target)
        every = getattr(options, "gram_every", TPPConfig.gram_every)
        # the schedule's iteration paces gram_every, so a resumed run computes the term at the same steps
        regularizers = [GramDecorrelation(options.gram_weight, target, every, lambda: schedule.iteration)]
        if options.weight_reg:
            regularizers.append(GrowingL2("filters"))
        if options.bn_reg:
            regularizers.append(GrowingL2("norms"))
        return regularizers, schedule, "start"
