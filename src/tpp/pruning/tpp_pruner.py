"""TPPPruner: Trainability Preserving Pruning (Wang & Fu, ICLR 2023) inside your own training loop.

Life cycle, like a ``torch.optim`` object::

    pruner = TPPPruner(model, example_inputs, ratio=0.5)
    loss = criterion(model(x), y) + pruner.penalty()   # Eq. (3), weight gram_weight * lambda
    optimizer.zero_grad(); loss.backward()
    pruner.regularize()                                 # growing L2 on pruned rows + BN, via .grad
    optimizer.step()
    pruner.step()                                       # lambda schedule, zero-out while stabilising
    ...
    model = pruner.prune(optimizer)                     # physical removal

Defaults are the official code's (digest §2.10 and §9).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterable, Mapping

import torch
import torch.nn as nn

from tpp.errors import ConfigError, PruningError
from tpp.pruning.penalties import GramPenalty, SelectedParameters
from tpp.pruning.plan import make_plan
from tpp.pruning.removal import ModelSnapshot, RemovalError, remove_channels
from tpp.pruning.serialization import record_plan
from tpp.pruning.units import PruningUnit, build_graph
from tpp.util.modules import device_of, unwrap


class TPPPruner:
    """Selects filters by L1 norm, regularises them towards de-correlation and zero, then removes them.

    Args:
        model: the network (a DataParallel/DDP wrapper is fine).
        example_inputs: a batch the model accepts, used once to trace channel dependencies.
        ratio: fraction of filters to prune per layer: a float, or ``{fnmatch pattern: ratio}`` on
            module names (``{"*layer*.conv1": 0.9}``), or the text ``"*layer*.conv1:0.9"``.
        scope: ``"internal"`` (the paper: channels not tied to residual adds or other layers) or
            ``"all"`` (every DependencyGraph group, residual-coupled channels included).
        ignored_layers: modules or module-name patterns never pruned (classifiers are always kept).
        reg_step, reg_interval, reg_ceiling: ``lambda = reg_step * floor(t / reg_interval)``, capped.
        stabilize_iters: iterations at the ceiling before the model is ready to prune.
        zero_out_interval: during stabilisation, layer ``i`` (forward order) is zeroed from
            iteration ``(i + 1) * zero_out_interval`` on.
        gram_weight: weight of the gram term (``lw_opp``, 1000 in the paper). 0 disables it.
        bn_reg, weight_reg: growing L2 on BatchNorm gamma/beta, and on filters and biases.
        global_ratio: if given, rank all units' channels network-wide and prune this fraction.
        gram_target: ``"decorrelate"`` (TPP) or ``"kernorth"`` (ablation: identity target).
    """

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
        zero_out_interval: int = 100,
        gram_weight: float = 1000.0,
        bn_reg: bool = True,
        weight_reg: bool = True,
        global_ratio: float | None = None,
        gram_target: str = "decorrelate",
    ) -> None:
        _check_schedule(reg_step, reg_interval, reg_ceiling, stabilize_iters, zero_out_interval, gram_weight)
        self.model = model
        self.module = unwrap(model)
        self.example_inputs = example_inputs
        self.config = dict(
            ratio=ratio if not isinstance(ratio, Mapping) else dict(ratio), scope=scope, reg_step=reg_step,
            reg_interval=reg_interval, reg_ceiling=reg_ceiling, stabilize_iters=stabilize_iters,
            zero_out_interval=zero_out_interval, gram_weight=gram_weight, bn_reg=bn_reg, weight_reg=weight_reg,
            global_ratio=global_ratio, gram_target=gram_target,
        )
        self._plan = make_plan(
            self.module, lambda: build_graph(self.module, example_inputs), example_inputs,
            ratio=ratio, global_ratio=global_ratio, scope=scope, ignored_layers=ignored_layers,
            broadcast=_broadcast_from_rank0)
        self.graph = build_graph(self.module, example_inputs)  # fresh: the trial removal used the others up
        self.units: list[PruningUnit] = self._plan.units
        self._units_by_name = self._plan.candidates  # every candidate, for load_state_dict
        self._pruned_roots = self._plan.pruned_roots
        self.iteration = 0
        self.stabilize_start: int | None = None
        self._zeroed_units = 0
        self._steps_to_ceiling = math.ceil(reg_ceiling / reg_step - 1e-9)
        self._zero_spacing = self._fit_zero_out_spacing(zero_out_interval, stabilize_iters)
        self._build_regularisers()
        self._pruned = False

    @property
    def pruned_indices(self) -> dict[str, list[int]]:
        """Pruned output channels per unit, keyed by the unit's root layer name (root coordinates)."""
        return {u.name: self._pruned_roots[u.name].tolist() for u in self.units}

    def _build_regularisers(self) -> None:
        gram_layers, weights, norms = [], [], []
        for unit in self.units:
            roots = self._pruned_roots[unit.name]
            for member in unit.rows:
                rows = member.local_indices(roots)
                gram_layers.append((member.module, rows))
                weights.append((member.module.weight, rows))
                weights.append((getattr(member.module, "bias", None), rows))
            for member in unit.norms:
                rows = member.local_indices(roots)
                norms.append((getattr(member.module, "weight", None), rows))
                norms.append((getattr(member.module, "bias", None), rows))
            norms += [(m.module, m.local_indices(roots), m.dim) for m in unit.params]
        self._gram = GramPenalty(gram_layers, target=self.config["gram_target"])
        self._weights = SelectedParameters(weights)
        self._norms = SelectedParameters(norms)
        # per-unit selections for the layer-wise zero-out of the stabilisation phase
        self._unit_params = [SelectedParameters(unit.tensors(self._pruned_roots[unit.name])) for unit in self.units]

    def _fit_zero_out_spacing(self, interval: int, stabilize_iters: int) -> int:
        # The official code exits when stabilisation is too short for layer-by-layer zero-out
        # (digest §2.7); we shrink the spacing instead, so short schedules still zero every layer.
        last = max(u.order for u in self.units) + 1
        if interval * last <= stabilize_iters:
            return interval
        spacing = stabilize_iters // (last + 1)
        if stabilize_iters >= 1 and spacing < interval:
            warnings.warn(
                f"tpp: stabilize_iters={stabilize_iters} is shorter than zero_out_interval x layers "
                f"({interval} x {last}); zeroing layers {spacing} iterations apart instead", stacklevel=3)
        return spacing

    # ------------------------------------------------------------------ schedule
    @property
    def phase(self) -> str:
        """``"regularize"``, ``"stabilize"`` or ``"done"``."""
        if self._pruned:
            return "done"
        if self.stabilize_start is None:
            return "regularize"
        if self.iteration - self.stabilize_start >= self.config["stabilize_iters"]:
            return "done"
        return "stabilize"

    @property
    def done(self) -> bool:
        """True once stabilisation is over: call :meth:`prune`."""
        return self.phase == "done"

    @property
    def total_iterations(self) -> int:
        """Iterations from the start to ``done``: growth to the ceiling, then stabilisation."""
        return self._steps_to_ceiling * self.config["reg_interval"] + self.config["stabilize_iters"]

    @property
    def reg_value(self) -> float:
        """The current growing-penalty strength lambda."""
        steps = min(self.iteration // self.config["reg_interval"], self._steps_to_ceiling)
        return min(self.config["reg_step"] * steps, self.config["reg_ceiling"])

    def penalty(self) -> torch.Tensor:
        """The gram term of Eq. (3) times ``gram_weight * lambda``; add it to the loss."""
        strength = self.config["gram_weight"] * self.reg_value
        if self._pruned or strength == 0:
            return torch.zeros((), device=device_of(self.module))
        return strength * self._gram()

    def regularize(self) -> None:
        """Add ``lambda * p`` to the gradients of pruned filters, biases and BN gamma/beta.

        Call after ``loss.backward()`` and before ``optimizer.step()``. Under AMP with a GradScaler,
        call ``scaler.unscale_(optimizer)`` first so that the penalty is not divided by the scale.
        """
        if self._pruned:
            return
        strength = self.reg_value
        if self.config["weight_reg"]:
            self._weights.add_l2_gradient(strength)
        if self.config["bn_reg"]:
            self._norms.add_l2_gradient(strength)

    def step(self) -> None:
        """Advance one iteration: update lambda and the phase, and zero layers while stabilising."""
        if self._pruned or self.done:
            return
        self.iteration += 1
        if self.stabilize_start is None and self.iteration // self.config["reg_interval"] >= self._steps_to_ceiling:
            self.stabilize_start = self.iteration
        if self.stabilize_start is not None:
            self._zero_due_units()

    def _zero_due_units(self) -> None:
        elapsed = self.iteration - self.stabilize_start
        for unit, params in zip(self.units, self._unit_params):
            if elapsed >= (unit.order + 1) * self._zero_spacing:
                params.zero_()

    def zero_pruned(self) -> None:
        """Set every pruned filter, bias and BN gamma/beta to exactly 0 now."""
        for params in self._unit_params:
            params.zero_()

    # ------------------------------------------------------------------ removal
    def prune(self, optimizer: torch.optim.Optimizer | None = None) -> nn.Module:
        """Zero the pruned channels and remove them physically; returns the smaller model.

        The removal is checked unit by unit to be function-preserving on ``example_inputs`` (eval
        mode). It is all or nothing: if any unit fails or would change the outputs, the model (and the
        optimizer) are left exactly as they were before the call and :class:`PruningError` names the
        layer; the pruner stays in its phase. If ``optimizer`` is given, its parameter groups
        are re-pointed at the new tensors in place (state of replaced tensors is dropped), so the
        same optimizer object keeps working, a frequent Torch-Pruning pitfall.
        """
        if self._pruned:
            return self.model
        snapshot = ModelSnapshot(self.module)
        before = len(self.graph.pruning_history())
        try:
            self._remove(optimizer, check_each=False)
        except RemovalError as error:
            # all or nothing: the model is put back as it was, and the graph rebuilt (its index maps were edited)
            snapshot.restore()
            self.graph = build_graph(self.module, self.example_inputs)
            if error.unit is not None:
                raise
            try:  # again, checking after every unit, only to name the one at fault
                self._remove(None, check_each=True)
            except RemovalError as named:
                error = named
            snapshot.restore()
            self.graph = build_graph(self.module, self.example_inputs)
            raise error from None
        except BaseException:
            snapshot.restore()
            self.graph = build_graph(self.module, self.example_inputs)
            raise
        record_plan(self.module, self.graph.pruning_history()[before:], self.example_inputs)
        self._pruned = True
        return _rewrap(self.model, self.module)

    def _remove(self, optimizer: torch.optim.Optimizer | None, check_each: bool) -> None:
        self.zero_pruned()
        remove_channels(self.module, self.graph, self.units, self._pruned_roots, self.example_inputs, optimizer,
                        check_each=check_each)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Plain-data state (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "version": 1,
            "iteration": self.iteration,
            "stabilize_start": self.stabilize_start,
            "pruned": self._pruned,
            "pruned_indices": self.pruned_indices,
            "config": {k: v for k, v in self.config.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a saved state so that a killed pruning run continues identically.

        The pruned set is restored as saved, not re-selected: regularisation has changed the norms.
        """
        if state.get("pruned"):
            raise PruningError("this pruner state is from after prune(); load the pruned model with tpp.load_pruned")
        indices = state.get("pruned_indices", {})
        unknown = sorted(set(indices) - set(self._units_by_name))
        if unknown:
            raise PruningError(
                f"pruner state names layers {unknown[:3]} that this model cannot prune; "
                "was it saved from another model or scope?")
        self.units = sorted((self._units_by_name[name] for name in indices), key=lambda u: u.order)
        self._pruned_roots = {name: torch.as_tensor(idx, dtype=torch.long) for name, idx in indices.items()}
        self.iteration = int(state["iteration"])
        self.stabilize_start = state.get("stabilize_start")
        self._build_regularisers()

    def __repr__(self) -> str:
        pruned = sum(len(v) for v in self._pruned_roots.values())
        total = sum(u.channels for u in self.units)
        return (f"TPPPruner(units={len(self.units)}, pruned_channels={pruned}/{total}, phase={self.phase!r}, "
                f"iteration={self.iteration}, lambda={self.reg_value:.4g})")


def _check_schedule(reg_step, reg_interval, reg_ceiling, stabilize_iters, zero_out_interval, gram_weight) -> None:
    if not reg_step > 0:
        raise ConfigError(f"reg_step must be > 0, got {reg_step}")
    if int(reg_interval) < 1:
        raise ConfigError(f"reg_interval must be >= 1 iteration, got {reg_interval}")
    if not reg_ceiling > 0:
        raise ConfigError(f"reg_ceiling must be > 0, got {reg_ceiling}")
    if int(stabilize_iters) < 0 or int(zero_out_interval) < 0:
        raise ConfigError("stabilize_iters and zero_out_interval must be >= 0")
    if gram_weight < 0:
        raise ConfigError(f"gram_weight must be >= 0, got {gram_weight}")


def _broadcast_from_rank0(chosen: list[torch.Tensor]) -> list[torch.Tensor]:
    """Under torch.distributed, every rank takes rank 0's choice, so all replicas prune alike."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return chosen
    payload = [[c.tolist() for c in chosen]]
    torch.distributed.broadcast_object_list(payload, src=0)
    return [torch.as_tensor(c, dtype=torch.long) for c in payload[0]]


def _rewrap(wrapper: nn.Module, module: nn.Module) -> nn.Module:
    """DDP holds buckets of the old parameters, so it is rebuilt; DataParallel reads .module each call."""
    if isinstance(wrapper, nn.parallel.DistributedDataParallel):
        return nn.parallel.DistributedDataParallel(
            module, device_ids=wrapper.device_ids, output_device=wrapper.output_device,
            find_unused_parameters=wrapper.find_unused_parameters,
        )
    return wrapper
