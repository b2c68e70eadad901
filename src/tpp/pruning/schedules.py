"""Schedules: how strong the regularisation is at each iteration, and when the model is ready to prune.

A schedule is stepped once per training iteration, like ``torch.optim.lr_scheduler``. It gives the
strength ``lambda`` that the regularisers multiply, the phase (``"regularize"``, ``"stabilize"``,
``"done"``) and, during stabilisation, which units are zeroed (the official code's layer-wise zero-out).

* :class:`GrowingSchedule`: TPP and GReg. ``lambda = reg_step * floor(t / reg_interval)`` up to
  ``reg_ceiling``, then ``stabilize_iters`` more iterations at the ceiling (Eq. 5, docs/method.md#schedule).
* :class:`ConstantSchedule`: a fixed number of iterations at a fixed strength (orthogonality-regularised
  training before L1 pruning).
* :class:`AdaptiveSchedule`: grows lambda faster while the pruned channels are far from zero, zeroes
  each unit once it has converged and ends when all have (beyond the paper).
* :class:`OneShot`: no regularisation phase at all (L1 and the methods built on it).
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any, Callable, Mapping, Sequence

from tpp.errors import ConfigError
from tpp.pruning.state import (
    FOREIGN,
    PrunerStateError,
    check_iteration,
    state_mapping,
    state_number,
    state_pair,
    state_whole,
)
from tpp.util.modules import warn_caller

# per unit (by forward position): (pruned/kept magnitude ratio, pruned-kept gram coupling), see BasePruner.progress
Progress = Callable[[], Mapping[int, tuple[float, float]]]


class Schedule:
    """Base class: the iteration counter and the phase logic shared by every schedule."""

    fixed_length = True  # whether total_iterations is the length of the phase (False: an upper bound)

    def __init__(self) -> None:
        self.iteration = 0

    def bind(self, orders: Sequence[int], progress: Progress | None = None) -> None:
        """Called once the pruned units are known, with their positions in forward order and a way to
        measure how far their regularisation has got."""

    def summary(self) -> dict[str, Any]:
        """How the schedule ran (for reports)."""
        return {"iterations": self.iteration}

    def value(self) -> float:
        """The strength ``lambda`` now."""
        raise NotImplementedError

    @property
    def phase(self) -> str:
        raise NotImplementedError

    @property
    def done(self) -> bool:
        return self.phase == "done"

    @property
    def total_iterations(self) -> int:
        """Iterations from the start until the model is ready to prune."""
        raise NotImplementedError

    def step(self) -> None:
        """Advance one iteration (nothing once done)."""
        if not self.done:
            self.iteration += 1

    def zero_due(self, order: int) -> bool:
        """Whether the unit at forward position ``order`` is zeroed at this iteration."""
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.iteration = int(state["iteration"])


class OneShot(Schedule):
    """No regularisation phase: ready to prune from the start."""

    def value(self) -> float:
        return 0.0

    @property
    def phase(self) -> str:
        return "done"

    @property
    def total_iterations(self) -> int:
        return 0


class ConstantSchedule(Schedule):
    """``iterations`` iterations at strength ``strength``, then done."""

    def __init__(self, iterations: int, strength: float) -> None:
        super().__init__()
        if int(iterations) < 0:
            raise ConfigError(f"the number of regularisation iterations must be >= 0, got {iterations}")
        self.iterations, self.strength = int(iterations), float(strength)

    def value(self) -> float:
        return self.strength

    @property
    def phase(self) -> str:
        return "done" if self.iteration >= self.iterations else "regularize"

    @property
    def total_iterations(self) -> int:
        return self.iterations


class GrowingSchedule(Schedule):
    """TPP's schedule (the official defaults: ``reg_step`` 1e-4 every ``reg_interval`` 10 iterations up
    to ``reg_ceiling`` 1, then ``stabilize_iters`` 10,000 at the ceiling).

    With ``zero_out_interval`` set, the unit at forward position ``i`` is zeroed at every iteration from
    ``(i + 1) * zero_out_interval`` iterations into stabilisation on (``None``: never, as in GReg-1).
    """

    def __init__(
        self,
        reg_step: float,
        reg_interval: int,
        reg_ceiling: float,
        stabilize_iters: int,
        zero_out_interval: int | None = None,
    ) -> None:
        super().__init__()
        if not reg_step > 0:
            raise ConfigError(f"reg_step must be > 0, got {reg_step}")
        if int(reg_interval) < 1:
            raise ConfigError(f"reg_interval must be >= 1 iteration, got {reg_interval}")
        if not reg_ceiling > 0:
            raise ConfigError(f"reg_ceiling must be > 0, got {reg_ceiling}")
        if int(stabilize_iters) < 0 or (zero_out_interval is not None and int(zero_out_interval) < 0):
            raise ConfigError("stabilize_iters and zero_out_interval must be >= 0")
        self.reg_step, self.reg_interval, self.reg_ceiling = reg_step, reg_interval, reg_ceiling
        self.stabilize_iters, self.zero_out_interval = stabilize_iters, zero_out_interval
        self.stabilize_start: int | None = None
        self._steps_to_ceiling = math.ceil(reg_ceiling / reg_step - 1e-9)
        self._spacing = zero_out_interval

    def bind(self, orders: Sequence[int], progress: Progress | None = None) -> None:
        if self.zero_out_interval is not None:
            self._spacing = _fit_zero_out_spacing(self.zero_out_interval, self.stabilize_iters, max(orders) + 1)

    def value(self) -> float:
        steps = min(self.iteration // self.reg_interval, self._steps_to_ceiling)
        return min(self.reg_step * steps, self.reg_ceiling)

    @property
    def phase(self) -> str:
        if self.stabilize_start is None:
            return "regularize"
        if self.iteration - self.stabilize_start >= self.stabilize_iters:
            return "done"
        return "stabilize"

    @property
    def total_iterations(self) -> int:
        return self._steps_to_ceiling * self.reg_interval + self.stabilize_iters

    def step(self) -> None:
        if self.done:
            return
        self.iteration += 1
        if self.stabilize_start is None and self.iteration // self.reg_interval >= self._steps_to_ceiling:
            self.stabilize_start = self.iteration

    def zero_due(self, order: int) -> bool:
        if self._spacing is None or self.stabilize_start is None:
            return False
        return self.iteration - self.stabilize_start >= (order + 1) * self._spacing

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "stabilize_start": self.stabilize_start}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        iteration = check_iteration(state["iteration"], None)
        start = state.get("stabilize_start")
        if start is not None and (
            isinstance(start, bool) or not isinstance(start, Integral) or not 0 <= start <= iteration
        ):
            raise PrunerStateError(
                f"the pruner state's stabilize_start {start!r} is not an iteration from 0 to {iteration}; {FOREIGN}"
            )
        self.iteration, self.stabilize_start = iteration, None if start is None else int(start)


def _fit_zero_out_spacing(interval: int, stabilize_iters: int, layers: int) -> int:
    # The official code exits when stabilisation is too short for a layer-by-layer zero-out; the
    # spacing is shrunk instead, so that short schedules still zero every layer before removal.
    if interval * layers <= stabilize_iters:
        return interval
    spacing = stabilize_iters // (layers + 1)
    if stabilize_iters >= 1 and spacing < interval:
        # ``layers`` counts layer positions up to the deepest pruned unit, not pruned units: say so, as the
        # dry run counts units
        warn_caller(
            f"tpp: stabilize_iters={stabilize_iters} is shorter than zero_out_interval x layer positions "
            f"({interval} x {layers}; pruned units are zeroed one by one in layer order, the deepest at position "
            f"{layers}); zeroing them {spacing} iterations apart instead"
        )
    return spacing


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
