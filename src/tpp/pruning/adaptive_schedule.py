"""The adaptive schedule: regularise until the pruned channels are gone (beyond the paper).

:class:`AdaptiveSchedule` grows lambda faster while the pruned channels are far from zero, zeroes each
unit once it has converged and ends when all have; the fixed schedules are in :mod:`tpp.pruning.schedules`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from tpp.errors import ConfigError
from tpp.pruning.schedules import Progress, Schedule
from tpp.pruning.state import (
    FOREIGN,
    PrunerStateError,
    check_iteration,
    state_mapping,
    state_number,
    state_pair,
    state_whole,
)


class AdaptiveSchedule(Schedule):
    """Regularise until the pruned channels are gone, not for a fixed number of iterations (beyond the paper).

    Every ``check_interval`` iterations it measures, per unit, the magnitude of the pruned channels
    relative to the kept ones (filters and biases, BatchNorm gamma/beta) and the gram coupling
    ``||W_p W_k^T|| / ||W_k W_k^T||`` between pruned and kept filters (:meth:`BasePruner.progress`):

    * lambda is paced by the pruned channels: while the slowest unit's ratio shrinks slower than
      halving every ``halving_iters`` iterations, lambda grows by ``increment`` every ``reg_interval``
      iterations (up to ``reg_ceiling``) and the increment doubles at every check; once the ratio
      shrinks at that pace, lambda holds and the increment falls back to ``reg_step``. The kept
      filters so get time to take over, as under the fixed schedule's slow growth, but only while
      there is something to take over (growing lambda as fast as the channels allow loses accuracy
      right after removal: measured by bench/bench_schedules.py);
    * a unit is done once its ratio and coupling are both below ``target`` (GReg stops at a kept/pruned
      magnitude ratio of 1000, the default ``target`` of 1e-3), or once lambda is at the ceiling and its
      ratio has shrunk by less than a fraction ``min_progress`` over a window of ``patience`` checks:
      the penalty then balances the loss's pull, and more iterations at the same lambda only wait
      (the fixed schedule zeroes every layer after a fixed wait at the ceiling instead);
    * a done unit is zeroed from then on (the official layer-wise zero-out, triggered by convergence
      instead of a timetable), and the phase ends ``patience`` checks after the last unit is done, so
      the network adapts to the zeroing; or after ``max_iterations`` (the fixed schedule's length by
      default), whichever comes first.
    """

    fixed_length = False

    def __init__(
        self,
        reg_step: float = 1e-4,
        reg_interval: int = 10,
        reg_ceiling: float = 1.0,
        target: float = 1e-3,
        check_interval: int = 50,
        patience: int = 5,
        min_progress: float = 0.5,
        halving_iters: int = 2000,
        max_iterations: int = 110_000,
    ) -> None:
        super().__init__()
        checks = {"reg_step": reg_step, "reg_ceiling": reg_ceiling, "target": target}
        for name, value in checks.items():
            if not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        for name, value in {
            "reg_interval": reg_interval,
            "check_interval": check_interval,
            "patience": patience,
            "halving_iters": halving_iters,
            "max_iterations": max_iterations,
        }.items():
            if int(value) < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        if not 0 <= min_progress < 1:
            raise ConfigError(f"min_progress must be in [0, 1), got {min_progress}")
        self.reg_step, self.reg_interval, self.reg_ceiling = reg_step, int(reg_interval), reg_ceiling
        self.target, self.check_interval, self.patience = target, int(check_interval), int(patience)
        self.min_progress, self.max_iterations = min_progress, int(max_iterations)
        self.halving_iters = int(halving_iters)
        self.strength = 0.0
        self.growing = True
        self.increment = reg_step
        self.converged: dict[int, int] = {}  # unit order -> iteration at which it was done (and zeroed)
        self.window: dict[int, tuple[int, float]] = {}  # unit order -> (iteration, ratio) opening its window
        self.last: dict[int, float] = {}  # unit order -> its ratio at the last check
        self.stopped_at: int | None = None
        self.stop_reason = ""
        self.history: list[tuple[int, float, float, float]] = []  # (iteration, lambda, max ratio, max coupling)
        self._progress: Progress | None = None
        self._orders: list[int] = []

    def bind(self, orders: Sequence[int], progress: Progress | None = None) -> None:
        if progress is None:
            raise ConfigError("the adaptive schedule needs a pruner that measures its progress (a BasePruner)")
        self._progress, self._orders = progress, list(orders)

    def value(self) -> float:
        return self.strength

    @property
    def phase(self) -> str:
        if self.stopped_at is not None:
            return "done"
        return "stabilize" if self.strength >= self.reg_ceiling else "regularize"

    @property
    def total_iterations(self) -> int:
        """An upper bound: the phase usually ends well before it."""
        return self.max_iterations

    def step(self) -> None:
        if self.done:
            return
        self.iteration += 1
        if self.iteration % self.reg_interval == 0 and self.growing:
            self.strength += self.increment
            if self.strength >= self.reg_ceiling * (1 - 1e-9):  # summed steps fall a rounding error short
                self.strength = self.reg_ceiling
        if self.iteration % self.check_interval == 0:
            self._check()
        if self.stopped_at is None and self.iteration >= self.max_iterations:
            self.stopped_at, self.stop_reason = self.iteration, "max_iterations"

    def _check(self) -> None:
        progress = self._progress()
        at_ceiling = self.strength >= self.reg_ceiling
        slowest = None  # the largest ratio of this check over the last, among units still regularised
        for order, (ratio, coupling) in progress.items():
            if order in self.converged:
                continue
            previous = self.last.get(order)
            if previous:
                slowest = ratio / previous if slowest is None else max(slowest, ratio / previous)
            self.last[order] = ratio
            plateau = False
            if at_ceiling:  # a window opens at the first check at the ceiling; each one must shrink the ratio enough
                opened, start = self.window.setdefault(order, (self.iteration, ratio))
                if self.iteration - opened >= self.patience * self.check_interval:
                    plateau = ratio > (1.0 - self.min_progress) * start
                    self.window[order] = (self.iteration, ratio)
            if (ratio <= self.target and coupling <= self.target) or plateau:
                self.converged[order] = self.iteration
        ratios = [r for r, _ in progress.values()]
        self.history.append(
            (
                self.iteration,
                self.strength,
                max(ratios, default=0.0),
                max((c for _, c in progress.values()), default=0.0),
            )
        )
        if slowest is not None:  # hold lambda while the slowest unit shrinks at the pace, grow it otherwise
            self.growing = slowest > 0.5 ** (self.check_interval / self.halving_iters)
        self.increment = self.increment * 2.0 if self.growing and not at_ceiling else self.reg_step
        if len(self.converged) == len(progress):
            if self.iteration - max(self.converged.values(), default=0) >= self.patience * self.check_interval:
                self.stopped_at, self.stop_reason = self.iteration, "converged"

    def zero_due(self, order: int) -> bool:
        return order in self.converged

    def summary(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else None
        return {
            "iterations": self.iteration,
            "stopped_at": self.stopped_at,
            "reason": self.stop_reason,
            "final_lambda": self.strength,
            "units_done_at": dict(sorted(self.converged.items())),
            "final_ratio": last[2] if last else None,
            "final_coupling": last[3] if last else None,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "strength": self.strength,
            "increment": self.increment,
            "growing": self.growing,
            "converged": dict(self.converged),
            "window": dict(self.window),
            "last": dict(self.last),
            "stopped_at": self.stopped_at,
            "stop_reason": self.stop_reason,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        iteration = check_iteration(state["iteration"], None)
        strength = state_number(state.get("strength", 0.0), "strength", 0.0, self.reg_ceiling)
        increment = state_number(state.get("increment", self.reg_step), "increment", 0.0, math.inf)
        growing, reason = state.get("growing", True), state.get("stop_reason", "")
        if not isinstance(growing, bool) or not isinstance(reason, str):
            raise PrunerStateError(f"the pruner state's growing/stop_reason are not a flag and a text; {FOREIGN}")
        stopped = state.get("stopped_at")
        if stopped is not None:
            stopped = state_whole(stopped, "stopped_at", iteration)
        converged = {
            state_whole(k, "unit", math.inf): state_whole(v, "converged", iteration)
            for k, v in state_mapping(state.get("converged", {}), "converged").items()
        }
        window = {
            state_whole(k, "unit", math.inf): state_pair(v, iteration)
            for k, v in state_mapping(state.get("window", {}), "window").items()
        }
        last = {
            state_whole(k, "unit", math.inf): state_number(v, "last")
            for k, v in state_mapping(state.get("last", {}), "last").items()
        }
        self.iteration, self.strength, self.increment, self.growing = iteration, strength, increment, growing
        self.converged, self.window, self.last = converged, window, last
        self.stopped_at, self.stop_reason = stopped, reason
