"""The base pruner: what every method shares. A method is a composition of parts.

A pruner is used inside the user's training loop, like a ``torch.optim`` object::

    pruner = SomePruner(model, example_inputs, ratio=0.5)
    loss = criterion(model(x), y) + pruner.penalty()   # loss terms of the regularisers
    optimizer.zero_grad(); loss.backward()
    pruner.regularize()                                 # gradient terms of the regularisers
    optimizer.step()
    pruner.step()                                       # schedule; zero-out while stabilising
    ...
    model = pruner.prune(optimizer)                     # physical removal, all or nothing

:class:`BasePruner` owns the channel units (from the dependency graph), the choice of channels (by
an *importance*, L1 by default; see :mod:`tpp.pruning.plan`), the layer-wise zero-out, the removal,
``state_dict`` / ``load_state_dict`` and the agreement of all processes of a distributed job. A method
supplies *regularisers* (:mod:`tpp.pruning.regularizers`) and a *schedule*
(:mod:`tpp.pruning.schedules`), and says whether the channels are chosen at the start (TPP, GReg) or
only at ``prune()`` time, on the weights the regularisation produced (orthogonality + L1).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import torch
import torch.nn as nn

from tpp.errors import ConfigError, TPPError
from tpp.pruning.configs import remove_keeping_configs
from tpp.pruning.graph import build_graph
from tpp.pruning.history import record_plan
from tpp.pruning.importance import as_importance
from tpp.pruning.penalties import SelectedParameters
from tpp.pruning.plan import make_plan
from tpp.pruning.presets import unfinished_message
from tpp.pruning.progress import unit_progress
from tpp.pruning.regularizers import Regularizer
from tpp.pruning.removal import ModelSnapshot, OptimizerSnapshot, RemovalError, parameter_names, repoint_optimizer
from tpp.pruning.replicas import broadcast_from_rank0, rewrap
from tpp.pruning.schedules import OneShot, Schedule, most_iterations
from tpp.pruning.state import FOREIGN, STATE_VERSION, PrunerStateError, check_state
from tpp.pruning.units import PruningUnit
from tpp.util.modules import device_of, unwrap, warn_caller

SELECT_AT = ("start", "prune")


class BasePruner:
    """Selects channels, runs the regularisers on the schedule, removes the channels.

    Args:
        model: the network (a DataParallel/DDP wrapper is fine).
        example_inputs: a batch the model accepts: a tensor, a tuple (positional arguments) or a dict
            (keyword arguments); used to trace channel dependencies and to check removal.
        ratio: fraction of channels to prune per unit: a float, ``{fnmatch pattern: ratio}`` on module
            names, or the text ``"pattern:ratio,..."``.
        scope: ``"internal"`` (channels produced by one layer, not tied to a residual add) or ``"all"``.
        ignored_layers: modules or module-name patterns never pruned (classifiers never are).
        global_ratio: if given, rank all units' channels network-wide and prune this fraction.
        importance: scores channels (``unit -> scores``); ``None`` is L1, a Torch-Pruning
            ``Importance`` is accepted.
        regularizers: applied in this order by :meth:`penalty` and :meth:`regularize`.
        schedule: the strength over time and when the model is ready (:class:`OneShot` if None).
        select_at: ``"start"`` (choose now and regularise those channels) or ``"prune"`` (choose at
            :meth:`prune`, on the weights then; the choice is still checked now).
        heads: also prune whole attention heads (key/value groups with their query heads) of attention
            modules with ``q_proj``/``k_proj``/``v_proj``/``o_proj`` (:mod:`tpp.pruning.heads`); ``ratio``
            patterns on those names (``"*self_attn*"``) set their ratio apart from the MLPs'.
    """

    # the named schedule presets (tpp.pruning.presets) the subclass accepts as ``schedule=``; named by
    # the warning of an early prune() as the shorter way to finish
    schedule_presets: tuple[str, ...] = ()

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
        regularizers: Sequence[Regularizer] = (),
        schedule: Schedule | None = None,
        select_at: str = "start",
        heads: bool = False,
    ) -> None:
        if select_at not in SELECT_AT:
            raise ConfigError(f"select_at must be one of {SELECT_AT}, got {select_at!r}")
        if not isinstance(heads, bool):
            raise ConfigError(f"heads must be True or False, got {heads!r}")
        self.model = model
        self.module = unwrap(model)
        self.example_inputs = example_inputs
        self.importance = as_importance(importance)
        self.regularizers = list(regularizers)
        self.schedule = schedule if schedule is not None else OneShot()
        self.select_at = select_at
        self._target = dict(
            ratio=ratio, scope=scope, ignored_layers=ignored_layers, global_ratio=global_ratio, heads=heads
        )
        self._plan_now()
        self._pruned = False
        self._warned_unfinished = False

    # ------------------------------------------------------------------ selection
    def _plan_now(self) -> None:
        plan = make_plan(
            self.module,
            lambda: build_graph(self.module, self.example_inputs),
            self.example_inputs,
            ratio=self._target["ratio"],
            global_ratio=self._target["global_ratio"],
            scope=self._target["scope"],
            ignored_layers=self._target["ignored_layers"],
            importance=self.importance,
            broadcast=broadcast_from_rank0,
            heads=self._target["heads"],
        )
        self.graph = build_graph(self.module, self.example_inputs)  # fresh: the trial removal used the others up
        self.units: list[PruningUnit] = plan.units
        self._pruned_roots = plan.pruned_roots
        # what a saved state is checked against (load_state_dict): the units that prune exactly, the
        # channel count of this selection per unit, and what the per-unit ratio asks of each
        failed = {s.name for s in plan.skipped}
        self._units_by_name = {n: u for n, u in plan.candidates.items() if n not in failed}
        self._planned = {name: len(roots) for name, roots in plan.pruned_roots.items()}
        self._nominal = {name: plan.nominal(name) for name in self._planned} if plan.ratios else None
        self._bind()

    def _bind(self) -> None:
        for regularizer in self.regularizers:
            regularizer.bind(self.module, self.units, self._pruned_roots)
        self.schedule.bind([u.order for u in self.units], progress=self.progress)
        # per-unit selections for the layer-wise zero-out of the stabilisation phase
        self._unit_params = [SelectedParameters(unit.tensors(self._pruned_roots[unit.name])) for unit in self.units]

    def progress(self) -> dict[int, tuple[float, float]]:
        """How far the regularisation has got, per unit (keyed by forward position): see
        :func:`tpp.pruning.progress.unit_progress`. Both numbers go to 0."""
        return unit_progress(self.units, self._pruned_roots)

    @property
    def pruned_indices(self) -> dict[str, list[int]]:
        """Pruned output channels per unit, keyed by the unit's root layer name (root coordinates).

        With ``select_at="prune"`` and before :meth:`prune`, what the current weights would give
        (chosen afresh on every call, so query it sparingly)."""
        if self.select_at == "prune" and not self._pruned:
            self._plan_now()
        return {u.name: self._pruned_roots[u.name].tolist() for u in self.units}

    # ------------------------------------------------------------------ schedule
    @property
    def phase(self) -> str:
        """``"regularize"``, ``"stabilize"`` or ``"done"``."""
        return "done" if self._pruned else self.schedule.phase

    @property
    def done(self) -> bool:
        """True once the model is ready: call :meth:`prune`."""
        return self.phase == "done"

    @property
    def iteration(self) -> int:
        """Iterations stepped so far."""
        return self.schedule.iteration

    @iteration.setter
    def iteration(self, value: int) -> None:
        self.schedule.iteration = int(value)

    @property
    def total_iterations(self) -> int:
        """Iterations from the start until :attr:`done`."""
        return self.schedule.total_iterations

    @property
    def reg_value(self) -> float:
        """The current regularisation strength lambda."""
        return self.schedule.value()

    def penalty(self) -> torch.Tensor:
        """The regularisers' loss terms at the current strength; add it to the loss."""
        total = None
        if not self._pruned and not self.schedule.done:
            strength = self.schedule.value()
            for regularizer in self.regularizers:
                term = regularizer.loss(strength)
                if term is not None:
                    total = term if total is None else total + term
        return total if total is not None else torch.zeros((), device=device_of(self.module))

    def regularize(self) -> None:
        """Add the regularisers' gradient terms to ``.grad``.

        Call after ``loss.backward()`` and before ``optimizer.step()``. Under AMP with a GradScaler,
        call ``scaler.unscale_(optimizer)`` first so that the terms are not divided by the scale.
        """
        if self._pruned:
            return
        strength = self.schedule.value()
        for regularizer in self.regularizers:
            regularizer.add_gradient(strength)

    def step(self) -> None:
        """Advance one iteration: the schedule, and the zero-out of the units that are due."""
        if self._pruned or self.done:
            return
        self.schedule.step()
        for unit, params in zip(self.units, self._unit_params):
            if self.schedule.zero_due(unit.order):
                params.zero_()

    def zero_pruned(self) -> None:
        """Set every pruned filter, bias, BN gamma/beta and per-channel parameter to exactly 0 now."""
        for params in self._unit_params:
            params.zero_()

    # ------------------------------------------------------------------ removal
    def prune(self, optimizer: torch.optim.Optimizer | None = None) -> nn.Module:
        """Zero the pruned channels and remove them physically; returns the smaller model.

        The removal is checked to be function-preserving on ``example_inputs`` (eval mode). It is all or
        nothing: if any unit fails or would change the outputs, or anything (Ctrl-C included) interrupts
        the call, the model and the optimizer are left exactly as they were before the call, a failure
        raises :class:`PruningError` naming the layer, and the pruner stays in its phase. If
        ``optimizer`` is given, its parameter groups are re-pointed at the new tensors in place (state
        of replaced tensors is dropped), so the same optimizer keeps working. Tied parameters stay tied
        (one tensor, in the optimizer once).
        """
        if self._pruned:
            return self.model
        if not self.done and not self._warned_unfinished:
            self._warned_unfinished = True  # once per pruner: a retried prune() has been told already
            warn_caller(unfinished_message(self, most_iterations(self.schedule)))
        if self.select_at == "prune":
            self._plan_now()
        snapshot = ModelSnapshot(self.module)
        optimizer_before = OptimizerSnapshot(optimizer)
        names_before = parameter_names(self.module)
        before = len(self.graph.pruning_history())
        try:
            try:
                self._remove(check_each=False)
            except RemovalError as error:
                if error.unit is not None:
                    raise
                # all or nothing: put the model back (and rebuild the graph, whose index maps were edited),
                # then remove again, checking after every unit, only to name the one at fault
                self._undo(snapshot)
                try:
                    self._remove(check_each=True)
                except RemovalError as named:
                    error = named
                raise error from None
            record_plan(self.module, self.graph.pruning_history()[before:], self.example_inputs)
            if optimizer is not None:
                repoint_optimizer(optimizer, self.module, names_before)
            self._pruned = True  # the commit: nothing after this can fail
        except BaseException:
            # one commit for the model and the optimizer: on any exception, Ctrl-C included, both go back
            self._pruned = False
            optimizer_before.restore()
            self._undo(snapshot)
            raise
        return rewrap(self.model, self.module)

    def _remove(self, check_each: bool) -> None:
        self.zero_pruned()
        remove_keeping_configs(
            self.module,
            self.graph,
            self.units,
            self._pruned_roots,
            self._units_by_name,
            self.example_inputs,
            check_each,
        )

    def _undo(self, snapshot: ModelSnapshot) -> None:
        snapshot.restore()
        self.graph = build_graph(self.module, self.example_inputs)

    # ------------------------------------------------------------------ state
    @property
    def config(self) -> dict[str, Any]:
        """The options the pruner was built with (plain data)."""
        target = dict(self._target, ignored_layers=None)
        if isinstance(target["ratio"], Mapping):
            target["ratio"] = dict(target["ratio"])
        return target

    def state_dict(self) -> dict:
        """Plain-data state (loadable with ``torch.load(weights_only=True)``)."""
        state = {"version": STATE_VERSION, **self.schedule.state_dict(), "pruned": self._pruned}
        if self.select_at == "start":
            state["pruned_indices"] = self.pruned_indices
        state["config"] = dict(self.config)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a saved state so that a killed pruning run continues identically.

        The pruned set is restored as saved, not re-selected: regularisation has changed the norms. The
        state must come from :meth:`state_dict` of a pruner built alike (same method, ratio, scope and
        options, same model); everything is checked before anything changes.

        Raises:
            PrunerStateError: one line saying what does not fit (a state from another run, method or
                model, or a damaged one) and what to do; the pruner is left as it was.
        """
        state, units, roots = check_state(self, state, most_iterations(self.schedule))
        before = (self.units, self._pruned_roots, self.schedule.state_dict())
        try:
            self.schedule.load_state_dict(state)
            self.units, self._pruned_roots = units, roots
            self._bind()
        except BaseException as error:  # all or nothing: the pruner as it was
            self.units, self._pruned_roots = before[:2]
            self.schedule.load_state_dict(before[2])
            self._bind()
            if isinstance(error, TPPError) or not isinstance(error, Exception):
                raise
            reason = " ".join(str(error).split())[:160] or type(error).__name__
            raise PrunerStateError(f"the pruner state's schedule does not fit ({reason}); {FOREIGN}") from None

    def __repr__(self) -> str:
        pruned = sum(len(v) for v in self._pruned_roots.values())
        total = sum(u.channels for u in self.units)
        return (
            f"{type(self).__name__}(units={len(self.units)}, pruned_channels={pruned}/{total}, "
            f"phase={self.phase!r}, iteration={self.iteration}, lambda={self.reg_value:.4g})"
        )
