"""Physical channel removal on the DependencyGraph: all-or-nothing, and checked to preserve the function.

The pruned channels are zeroed first, so their removal must not change the network's outputs. Every
unit's removal is checked on the example inputs (eval mode); the first one that fails or changes the
outputs stops the removal, the model is put back exactly as it was (:class:`ModelSnapshot`), and a
:class:`PruningError` names the layer and the reason. :func:`trial_removal` runs the same removal at
construction time, so that units that cannot be removed exactly are left out before any training.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
import torch_pruning as tp

from tpp.errors import PruningError
from tpp.pruning.heads import HISTORY_PREFIX, remove_heads
from tpp.pruning.precision import FLOAT64_TOLERANCE, run_float64
from tpp.pruning.ties import find_ties, retie
from tpp.pruning.units import REMOVAL_FAILS, REMOVAL_INEXACT, PruningUnit
from tpp.util.inputs import call_without_cache, output_tensors

# Relative tolerance of the function-preservation check where it cannot run in float64 (a model that does
# not run so): removing zeroed channels only reorders float32 sums (~1e-7 relative per layer, amplified
# by depth), while a structural change shows up at 1e-2 or more. In float64 it is FLOAT64_TOLERANCE.
CHECK_TOLERANCE = 1e-5


class ModelSnapshot:
    """Enough of a model's state to put it back exactly: every module's attributes and, optionally,
    the values of its tensors.

    Torch-Pruning replaces parameters and buffers by new tensors and edits size attributes
    (``out_channels``, ``num_features``, ...); restoring each module's attribute dict brings back the
    original tensor objects, so the user's optimizer and references stay valid. ``values=True`` also
    restores in-place changes (the zero-out that precedes removal)."""

    def __init__(self, model: nn.Module, values: bool = True):
        self._attrs = [(m, _shallow_copy(m.__dict__)) for m in model.modules()]
        # a transformers config that the removal keeps true (tpp.pruning.configs) is one object shared by modules
        configs = {id(c): c for m in model.modules() if hasattr(c := getattr(m, "config", None), "__dict__")}
        self._configs = [(c, dict(c.__dict__)) for c in configs.values()]
        tensors = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
        self._values = [(t, t.detach().clone()) for t in tensors.values()] if values else []

    @torch.no_grad()
    def restore(self) -> None:
        for module, attrs in self._attrs:
            module.__dict__.clear()
            module.__dict__.update(_shallow_copy(attrs))
        for config, attrs in self._configs:
            config.__dict__.clear()
            config.__dict__.update(attrs)
        for tensor, value in self._values:
            tensor.copy_(value)


def _shallow_copy(attrs: dict) -> dict:
    # module dicts hold the _parameters/_buffers/_modules dicts that pruning edits in place
    return {k: (v.copy() if isinstance(v, (dict, list)) else v) for k, v in attrs.items()}


def eval_outputs(model: nn.Module, example_inputs: Any) -> list[torch.Tensor]:
    """Every output tensor of ``model`` on ``example_inputs`` in eval mode, computed in float64 (on float64
    copies of its tensors, :mod:`tpp.pruning.precision`), or in the model's own precision if it does not
    run in float64; train/eval modes are restored."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            try:
                return _tensors_of(run_float64(model, example_inputs))
            except Exception:  # noqa: BLE001 - e.g. a kernel without float64: check in its own precision
                return _tensors_of(call_without_cache(model, example_inputs))
    finally:
        for m, mode in modes.items():
            m.train(mode)


def _tensors_of(output: Any) -> list[torch.Tensor]:
    return [t.detach().clone() for t in output_tensors(output)]


def check_finite(outputs: Sequence[torch.Tensor], when: str, hint: str) -> None:
    """Raise :class:`PruningError` if an output holds NaN or infinity."""
    if any(t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in outputs):
        raise PruningError(f"the model's outputs are not finite {when}; {hint}")


def output_change(reference: Sequence[torch.Tensor], after: Sequence[torch.Tensor]) -> str | None:
    """Why ``after`` differs from ``reference`` beyond the tolerance, or None if it does not: ``FLOAT64_TOLERANCE``
    for a float64 reference (:func:`eval_outputs`), :data:`CHECK_TOLERANCE` otherwise."""
    if len(reference) != len(after):
        return f"the model now returns {len(after)} tensors instead of {len(reference)}"
    for ref, new in zip(reference, after):
        if ref.shape != new.shape:
            return f"an output changed shape {tuple(ref.shape)} -> {tuple(new.shape)}"
        if not ref.is_floating_point():
            if not torch.equal(ref, new):
                return "an integer output changed"
            continue
        scale = float(ref.abs().max()) if ref.numel() else 0.0
        error = float((ref - new).abs().max()) / max(scale, 1.0) if ref.numel() else 0.0
        if not math.isfinite(error):
            return "an output became NaN or infinite"
        if error > (FLOAT64_TOLERANCE if ref.dtype == torch.float64 else CHECK_TOLERANCE):
            return f"the outputs changed (max relative error {error:.2e})"
    return None


def _remove_unit(graph: tp.DependencyGraph, unit: PruningUnit, roots: torch.Tensor) -> None:
    if unit.heads is not None:  # whole heads, cut by tpp (Torch-Pruning cannot follow them); recorded alike
        remove_heads(unit.heads, roots)
        graph.pruning_history().append([HISTORY_PREFIX + unit.name, True, roots.tolist()])
        return
    handler = graph.get_pruner_of_module(unit.root).prune_out_channels
    group = graph.get_pruning_group(unit.root, handler, roots.tolist())
    if not graph.check_pruning_group(group):
        raise PruningError(f"removing {len(roots)} channels of {unit.name} would empty a layer")
    group.prune()


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


class RemovalError(PruningError):
    """Removal failed or would change the network; ``unit`` names the unit at fault when known."""

    def __init__(self, message: str, unit: str | None = None):
        super().__init__(message)
        self.unit = unit


def _changed(reference: Sequence[torch.Tensor], model: nn.Module, example_inputs: Any) -> str | None:
    """How the outputs differ from ``reference`` now, including "no longer runs"; None if they do not."""
    try:
        return output_change(reference, eval_outputs(model, example_inputs))
    except Exception as error:  # a removal that breaks the forward pass
        return f"the model no longer runs ({_short(error)})"


def remove_channels(
    model: nn.Module,
    graph: tp.DependencyGraph,
    units: Sequence[PruningUnit],
    pruned_roots: dict[str, torch.Tensor],
    example_inputs: Any,
    check_each: bool = False,
) -> None:
    """Remove ``pruned_roots`` of every unit from ``model`` in place and check the outputs did not change.

    The caller has zeroed those channels. The outputs are compared once at the end, or after every unit
    with ``check_each`` (to name the unit at fault). Tied parameters that every owner lost alike are
    tied again (:func:`tpp.pruning.ties.retie`). On failure the model is left partly pruned: run this
    inside a :class:`ModelSnapshot` and restore it, as :meth:`BasePruner.prune` does; re-pointing an
    optimizer (:func:`repoint_optimizer`) is the caller's, once the removal has succeeded.

    Raises:
        RemovalError: a unit's removal failed, a tie would be broken, or the outputs changed (naming the
            unit with ``check_each``).
        PruningError: non-finite outputs before removal.
    """
    ties = find_ties(model)
    reference = eval_outputs(model, example_inputs)
    check_finite(reference, "after regularisation", "it diverged: lower gram_weight or reg_step (or the learning rate)")
    for unit in units:
        try:
            _remove_unit(graph, unit, pruned_roots[unit.name])
        except PruningError as error:
            raise RemovalError(str(error), unit.name) from None
        except Exception as error:  # torch and Torch-Pruning raise many kinds here
            raise RemovalError(
                f"removing channels of {unit.name} failed ({_short(error)}); pass {unit.name!r} in ignored_layers",
                unit.name,
            ) from None
        change = _changed(reference, model, example_inputs) if check_each else None
        if change is not None:
            raise RemovalError(
                f"removing the zeroed channels of {unit.name} would change the network: {change}; "
                f"pass {unit.name!r} in ignored_layers",
                unit.name,
            )
    try:
        retie(ties)
    except PruningError as error:
        raise RemovalError(str(error)) from None
    if not check_each:
        change = _changed(reference, model, example_inputs)
        if change is not None:
            raise RemovalError(f"removing the zeroed channels would change the network: {change}")


def trial_removal(
    model: nn.Module,
    graph_factory: Callable[[], tp.DependencyGraph],
    units: Sequence[PruningUnit],
    pruned_roots: dict[str, torch.Tensor],
    example_inputs: Any,
    graph: tp.DependencyGraph | None = None,
    in_removed_state: Callable[[], None] | None = None,
) -> dict[str, tuple[str, str]]:
    """Zero and remove every unit's selected channels, then put the model back exactly as it was.

    Returns ``{unit name: (reason kind, detail)}`` for the units whose removal fails or changes the
    outputs. The trial runs on *re-drawn* weights (:func:`_sensitise`): whether removing zeroed
    channels preserves the function is a property of the structure, and freshly initialised models
    hide structural changes (near-uniform attention makes mixed-up heads look exact to 1e-5). All
    units are removed before the outputs are compared; only if they changed (or the model no longer
    runs) is each unit tried again on its own, to find which. ``graph`` (built by ``graph_factory`` if
    None) and the graphs ``graph_factory`` builds are used up: Torch-Pruning edits their index maps.
    ``in_removed_state`` is called with every unit that did not fail removed, before the model is put
    back (to inspect what the removal made of it, e.g. of tied parameters).
    """
    check_finite(eval_outputs(model, example_inputs), "on example_inputs", "check the model and the example inputs")
    whole = ModelSnapshot(model, values=True)
    try:
        reference = _sensitised_reference(model, whole, units, pruned_roots, example_inputs)
        failures = _remove_each(model, graph_factory, units, pruned_roots, example_inputs, None, graph)
        if _changed(reference, model, example_inputs) is not None:
            whole.restore()
            reference = _sensitised_reference(model, whole, units, pruned_roots, example_inputs)
            rest = [u for u in units if u.name not in failures]
            failures.update(_remove_each(model, graph_factory, rest, pruned_roots, example_inputs, reference))
        if in_removed_state is not None:
            in_removed_state()
    finally:
        whole.restore()
    return failures


def _sensitised_reference(model, whole, units, pruned_roots, example_inputs) -> list[torch.Tensor]:
    """Re-draw the weights, zero the channels and return the outputs; the model's own weights if the
    re-drawn ones overflow."""
    _sensitise(model)
    zero_channels(units, pruned_roots)
    reference = eval_outputs(model, example_inputs)
    if all(bool(torch.isfinite(t).all()) for t in reference if t.is_floating_point()):
        return reference
    whole.restore()
    zero_channels(units, pruned_roots)
    reference = eval_outputs(model, example_inputs)
    check_finite(reference, "on example_inputs", "check the model and the example inputs")
    return reference


@torch.no_grad()
def _sensitise(model: nn.Module, seed: int = 0) -> None:
    """Re-draw every floating-point parameter at unit scale from a private generator (the global RNG
    is untouched): matrices ~ N(0, 1/fan_in), scales (``*weight`` vectors) ~ 1 + N(0, 1/4), other
    vectors ~ N(0, 1/4). Buffers (BatchNorm statistics) keep their values."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if not param.is_floating_point() or param.numel() == 0:
            continue
        noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
        if param.dim() >= 2:
            value = noise / math.sqrt(max(1, param[0].numel()))
        elif name.endswith("weight"):
            value = 1.0 + 0.5 * noise
        else:
            value = 0.5 * noise
        param.copy_(value.to(param.dtype))


def _remove_each(
    model, graph_factory, units, pruned_roots, example_inputs, reference, graph=None
) -> dict[str, tuple[str, str]]:
    """Remove units one by one, undoing (and reporting) each that fails or, given a reference, changes it."""
    failures: dict[str, tuple[str, str]] = {}
    graph = graph if graph is not None else graph_factory()
    for unit in units:
        step = ModelSnapshot(model, values=False)
        try:
            _remove_unit(graph, unit, pruned_roots[unit.name])
            change = None if reference is None else _changed(reference, model, example_inputs)
            problem = None if change is None else (REMOVAL_INEXACT, change)
        except Exception as error:  # any failure of the trial only excludes the unit
            problem = (REMOVAL_FAILS, _short(error))
        if problem is not None:
            failures[unit.name] = problem
            step.restore()
            graph = graph_factory()  # its index maps were edited by the failed removal
    return failures


@torch.no_grad()
def zero_channels(units: Sequence[PruningUnit], pruned_roots: dict[str, torch.Tensor]) -> None:
    """Set every tensor slice that holds the given channels to exactly 0."""
    for unit in units:
        for tensor, local, dim in unit.tensors(pruned_roots[unit.name]):
            if tensor is not None and len(local):
                tensor.index_fill_(dim, local.to(tensor.device), 0.0)


def parameter_names(model: nn.Module) -> dict[int, str]:
    """``id(parameter) -> name`` of every parameter (a tied one under its first name), for :func:`repoint_optimizer`."""
    return {id(p): n for n, p in model.named_parameters()}


def repoint_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module, names_before: dict[int, str]) -> None:
    """Point ``optimizer`` at the model's current parameters, keeping state only for unchanged tensors.

    Torch-Pruning replaces every pruned tensor by a new ``nn.Parameter``; an optimizer that still
    holds the old ones would silently train nothing. ``names_before`` is :func:`parameter_names` of
    the model before the removal. Not atomic on its own: see :class:`OptimizerSnapshot`.
    """
    current = dict(model.named_parameters())
    for group in optimizer.param_groups:
        new_params = []
        for p in group["params"]:
            name = names_before.get(id(p))
            replacement = current.get(name, p) if name is not None else p
            if replacement is not p:
                optimizer.state.pop(p, None)
            new_params.append(replacement)
        group["params"] = new_params


class OptimizerSnapshot:
    """What :func:`repoint_optimizer` changes in an optimizer (its groups' parameter lists and its
    per-parameter state), so that a failed or interrupted :meth:`BasePruner.prune` puts it back."""

    def __init__(self, optimizer: torch.optim.Optimizer | None):
        self._optimizer = optimizer
        if optimizer is not None:
            self._params = [(group, list(group["params"])) for group in optimizer.param_groups]
            self._state = dict(optimizer.state)

    def restore(self) -> None:
        if self._optimizer is None:
            return
        for group, params in self._params:
            group["params"] = params
        self._optimizer.state.clear()
        self._optimizer.state.update(self._state)
