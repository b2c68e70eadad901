"""Schedules: how strong the regularisation is at each iteration, and when the model is ready to prune.

A schedule is stepped once per training iteration, like ``torch.optim.lr_scheduler``. It gives the
strength ``lambda`` that the regularisers multiply, the phase (``"regularize"``, ``"stabilize"``,
``"done"``) and, during stabilisation, which units are zeroed (the official code's layer-wise zero-out).

* :class:`GrowingSchedule`: TPP and GReg. ``lambda = reg_step * floor(t / reg_interval)`` up to
  ``reg_ceiling``, then ``stabilize_iters`` more iterations at the ceiling (Eq. 5, docs/method.md#schedule).
* :class:`ConstantSchedule`: a fixed number of iterations at a fixed strength (orthogonality-regularised
  training before L1 pruning).
* :class:`~tpp.pruning.adaptive_schedule.AdaptiveSchedule` (in its own module): grows lambda faster while
  the pruned channels are far from zero, zeroes each unit once it has converged and ends when all have
  (beyond the paper).
* :class:`OneShot`: no regularisation phase at all (L1 and the methods built on it).
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any, Callable, Mapping, Sequence

from tpp.errors import ConfigError
from tpp.pruning.state import FOREIGN, PrunerStateError, check_iteration
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


def most_iterations(schedule: Schedule) -> int | None:
    """The most iterations ``schedule`` can count (every built-in one stops there), None if it does not say."""
    try:
        return int(schedule.total_iterations)
    except (NotImplementedError, TypeError, ValueError, OverflowError):
        return None


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
