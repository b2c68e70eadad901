"""GReg-1 (Wang et al., ICLR 2021): a growing L2 penalty on the L1-picked filters, then removal.

TPP without the gram term, the BatchNorm and bias terms and the layer-wise zero-out (the pruned
filters are zeroed only at removal), on TPP's growing schedule. GReg's early stop on a kept/pruned
magnitude ratio is not implemented: the phase always runs to the ceiling plus ``stabilize_iters``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

import torch.nn as nn

from tpp.pruning.base import BasePruner
from tpp.pruning.options import check_options, option
from tpp.pruning.presets import SCHEDULE_PRESETS, check_preset, preset_config
from tpp.pruning.registry import pruning_method
from tpp.pruning.regularizers import GrowingL2
from tpp.pruning.schedules import GrowingSchedule


@dataclass
class GReg1Config:
    """GReg-1's options (TPP's schedule defaults)."""

    reg_step: float = option(1e-4, "lambda grows by this every reg_interval iterations", minimum=0, above=True)
    reg_interval: int = option(10, "iterations between lambda updates", minimum=1)
    reg_ceiling: float = option(1.0, "lambda stops growing here", minimum=0, above=True)
    stabilize_iters: int = option(10_000, "iterations at the ceiling before removal", minimum=0)

    def make_schedule(self) -> GrowingSchedule:
        """TPP's growing schedule without the layer-wise zero-out."""
        return GrowingSchedule(self.reg_step, self.reg_interval, self.reg_ceiling, self.stabilize_iters,
                               zero_out_interval=None)


@pruning_method("greg1", regularized=True, description="GReg-1: growing L2 on the pruned filters (Wang et al., 2021b)",
                config=GReg1Config)
class GReg1Pruner(BasePruner):
    """L1-picked filters get ``W.grad += lambda * W`` on a growing schedule, then are removed.

    ``schedule`` is a preset of :mod:`tpp.pruning.presets`: ``"paper"`` (the options as given) or
    ``"fast"`` (``reg_step`` x10, ``stabilize_iters`` / 10).
    """

    schedule_presets = SCHEDULE_PRESETS

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any,
        ratio: float | Mapping[str, float] | str | None = 0.5,
        scope: str = "internal",
        ignored_layers: Iterable[nn.Module | str] | None = None,
        reg_step: float = 1e-4,
        reg_interval: int = 10,
        reg_ceiling: float = 1.0,
        stabilize_iters: int = 10_000,
        global_ratio: float | None = None,
        *,
        importance: Any = None,
        heads: bool = False,
        schedule: str = "paper",
    ) -> None:
        self.options = GReg1Config(reg_step, reg_interval, reg_ceiling, stabilize_iters)
        check_options(self.options)
        self.options = preset_config(self.options, check_preset(schedule))
        super().__init__(model, example_inputs, ratio, scope, ignored_layers, global_ratio,
                         importance=importance, heads=heads,
                         regularizers=[GrowingL2("filter_weights")], schedule=self.options.make_schedule())

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, **asdict(self.options)}

