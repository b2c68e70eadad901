"""A pruner built from its method's options, the way ``torch.optim`` builds ``defaults``.

A method declares its options once, as the fields of its config dataclass (:mod:`tpp.pruning.options`),
and says how its parts are composed from them (:meth:`ConfiguredPruner._compose`); the constructor
signature common to every method, the option checks, the schedule presets and ``config`` live here::

    @pruning_method("greg1", regularized=True, description="...")   # registers Config as its options
    class GReg1Pruner(ConfiguredPruner):
        Config = GReg1Config

        def _compose(self, schedule):
            return [GrowingL2("filter_weights")], self.options.make_schedule(), "start"
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Iterable, Mapping, Sequence

import torch.nn as nn

from tpp.errors import ConfigError
from tpp.pruning.base import BasePruner
from tpp.pruning.options import build_options
from tpp.pruning.presets import SCHEDULE_PRESETS, check_preset, preset_config
from tpp.pruning.regularizers import Regularizer
from tpp.pruning.schedules import Schedule

# what _compose returns: the regularisers, the schedule (None: one-shot) and when channels are chosen
Composition = tuple[Sequence[Regularizer], Schedule | None, str]


class ConfiguredPruner(BasePruner):
    """A :class:`BasePruner` whose method options are the fields of :attr:`Config`, passed as keywords.

    Args:
        model, example_inputs, ratio, scope, ignored_layers, global_ratio, importance, heads: as
            :class:`BasePruner`.
        schedule: a preset of :mod:`tpp.pruning.presets` applied to the options (``"paper"``, the
            default, or None: the options as given; ``"fast"``: the regularisation shortened tenfold),
            or, where :attr:`accepts_schedule` is True, a :class:`~tpp.pruning.schedules.Schedule` to
            use instead of the one the options describe.
        **options: the method's options, the fields of :attr:`Config` (see the method's config class).

    Raises:
        ConfigError: an option :attr:`Config` does not declare, a bad value or an unknown preset.
    """

    # the method's options dataclass; None: the method takes no options
    Config: type | None = None
    # whether ``schedule=`` may be a Schedule object (TPP: the adaptive variant passes its own)
    accepts_schedule: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "schedule_presets" not in vars(cls):
            # a preset scales the options a config's make_schedule() reads; without one there is nothing to shorten
            cls.schedule_presets = SCHEDULE_PRESETS if hasattr(cls.Config, "make_schedule") else ()

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
        schedule: Schedule | str | None = "paper",
        **options: Any,
    ) -> None:
        self.options = build_options(self.Config, options, type(self).__name__)
        if schedule is None or isinstance(schedule, str) or not self.accepts_schedule:
            preset = check_preset("paper" if schedule is None else schedule)
            if self.schedule_presets:
                self.options = preset_config(self.options, preset)
            elif preset != "paper":
                raise ConfigError(
                    f"{type(self).__name__} has no regularisation schedule to shorten; leave schedule= out"
                )
            schedule = None
        regularizers, schedule, select_at = self._compose(schedule)
        super().__init__(
            model,
            example_inputs,
            ratio,
            scope,
            ignored_layers,
            global_ratio,
            importance=importance,
            regularizers=regularizers,
            schedule=schedule,
            select_at=select_at,
            heads=heads,
        )

    def _compose(self, schedule: Schedule | None) -> Composition:
        """The method's parts from ``self.options``: its regularisers, its schedule and ``select_at``.

        ``schedule`` is the Schedule the caller passed (only where :attr:`accepts_schedule`), else None:
        build it from the options. The default is one-shot: no regularisers, no schedule, chosen at the start.
        """
        return (), None, "start"

    @property
    def config(self) -> dict[str, Any]:
        """The common options and the method's (after the schedule preset), as plain data."""
        return {**super().config, **(asdict(self.options) if self.options is not None else {})}
