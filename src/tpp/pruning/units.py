"""Pruning units: sets of coupled output channels, found with Torch-Pruning's DependencyGraph.

A *unit* is one DependencyGraph group rooted at a Conv/Linear layer. Removing root channel ``c``
removes, in every member, the slice that the graph maps to ``c``:

* ``rows``: Conv/Linear layers whose output filters go (TPP's gram penalty and growing L2 act on them);
* ``norms``: BatchNorm (or other affine per-channel) layers whose gamma/beta go (TPP's BN term, Eq. 5);
* consumers' input channels, concat offsets, reshapes: handled by the graph at removal time.

``scope="internal"`` keeps only units with a single ``rows`` layer, i.e. channels not tied to a
residual add or to other layers: exactly what the paper prunes (digest §2.3). ``scope="all"`` keeps
every unit that can be removed without changing the network's function once its channels are zero.
"""

from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass, field
from typing import Iterable

import torch
import torch.nn as nn
import torch_pruning as tp
from torch_pruning import ops

from tpp.errors import ConfigError
from tpp.models.layers import ChannelPadShortcut
from tpp.pruning.shortcut_pruner import ChannelPadShortcutPruner

# Per-channel affine layers whose gamma/beta are zeroed and removed with the channel.
_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.InstanceNorm2d)
# Layers whose channel slice is removed exactly, with no statistics shared across channels.
_PASS_THROUGH_TYPES = (nn.PReLU,)
SCOPES = ("internal", "all")


@dataclass
class Member:
    """One layer touched by a unit: ``local[i]`` is the layer's index for the unit's channel ``roots[i]``."""

    name: str
    module: nn.Module
    roots: torch.Tensor
    local: torch.Tensor

    def local_indices(self, root_indices: torch.Tensor) -> torch.Tensor:
        """The layer's own indices for the given root channels."""
        return self.local[torch.isin(self.roots, root_indices)]


@dataclass
class PruningUnit:
    """A set of coupled channels that is selected, regularised and removed together."""

    name: str
    root: nn.Module
    channels: int
    rows: list[Member] = field(default_factory=list)
    norms: list[Member] = field(default_factory=list)
    # Root channels allowed to be pruned (None: all). Channels that carry an identity copy of another
    # layer's output (option-A shortcut) can never be zeroed by regularisation, so they stay.
    candidates: torch.Tensor | None = None
    order: int = 0  # position of the root among all Conv/Linear layers, forward order (zero-out order)

    @property
    def row_names(self) -> list[str]:
        return [m.name for m in self.rows]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DataParallel / DistributedDataParallel wrappers."""
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def build_graph(model: nn.Module, example_inputs) -> tp.DependencyGraph:
    """Build Torch-Pruning's DependencyGraph without leaving the model in eval mode (a TP pitfall)."""
    was_training = {m: m.training for m in model.modules()}
    with torch.enable_grad():
        graph = tp.DependencyGraph().build_dependency(
            model,
            example_inputs=example_inputs,
            customized_pruners={ChannelPadShortcut: ChannelPadShortcutPruner()},
            verbose=False,
        )
    for module, mode in was_training.items():
        module.train(mode)
    return graph


def find_units(
    model: nn.Module,
    graph: tp.DependencyGraph,
    scope: str = "internal",
    ignored_layers: Iterable[nn.Module | str] | None = None,
) -> list[PruningUnit]:
    """All prunable units of ``model`` in forward order, for the given scope."""
    if scope not in SCOPES:
        raise ConfigError(f"unknown scope {scope!r}: use 'internal' (the paper's) or 'all' (residual-coupled too)")
    names = {module: name for name, module in model.named_modules()}
    ignored = _resolve_ignored(model, ignored_layers) | _output_layers(graph)
    layer_order = [m for m in _forward_order(graph, model) if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Linear))]
    position = {m: i for i, m in enumerate(layer_order)}

    units = []
    for group in graph.get_all_groups(ignored_layers=list(ignored), root_module_types=(nn.Conv2d, nn.Conv1d, nn.Linear)):
        unit, problem = _unit_from_group(group, graph, names)
        if unit is None:
            continue
        if problem is not None:
            if scope == "all" or len(unit.rows) == 1:
                warnings.warn(f"tpp: leaving {unit.name} unpruned: {problem}", stacklevel=3)
            continue
        if scope == "internal" and len(unit.rows) != 1:
            continue
        if unit.candidates is not None and len(unit.candidates) == 0:
            continue
        unit.order = position.get(unit.root, len(position))
        units.append(unit)
    units.sort(key=lambda u: u.order)
    return units


def _unit_from_group(group, graph, names) -> tuple[PruningUnit | None, str | None]:
    root = group[0].dep.target.module
    unit = PruningUnit(name=names.get(root, str(root)), root=root, channels=len(group[0].idxs))
    problem = None
    for item in group:
        module, handler = item.dep.target.module, item.dep.handler
        is_out = graph.is_out_channel_pruning_fn(handler) and not graph.is_in_channel_pruning_fn(handler)
        member = Member(
            names.get(module, type(module).__name__),
            module,
            torch.as_tensor(item.root_idxs, dtype=torch.long),
            torch.as_tensor(item.idxs, dtype=torch.long),
        )
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
            if module.groups > 1 and not depthwise:
                problem = f"channels reach grouped convolution {member.name} (groups={module.groups})"
            elif is_out or depthwise:
                unit.rows.append(member)
        elif isinstance(module, nn.Linear):
            if is_out:
                unit.rows.append(member)
        elif isinstance(module, _NORM_TYPES):
            if isinstance(module, nn.LayerNorm) and module.normalized_shape[-1] != unit.channels:
                problem = f"channels are normalised jointly by {member.name}"
            elif getattr(module, "weight", None) is not None or isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                unit.norms.append(member)
        elif isinstance(module, ChannelPadShortcut):
            if is_out:
                zero = module.source_index[member.local] < 0
                allowed = member.roots[zero]
                unit.candidates = allowed if unit.candidates is None else unit.candidates[torch.isin(unit.candidates, allowed)]
        elif isinstance(module, nn.GroupNorm):
            problem = f"channels are normalised jointly by GroupNorm {member.name}"
        elif isinstance(module, nn.Parameter):
            problem = "channels reach a bare nn.Parameter whose value cannot be zeroed safely"
        elif isinstance(module, nn.Module) and not isinstance(module, _PASS_THROUGH_TYPES) and not _is_graph_op(module):
            problem = f"channels reach {type(module).__name__} {member.name}, which tpp does not prune"
    if not unit.rows:
        return None, None
    return unit, problem


def _is_graph_op(module) -> bool:
    """Torch-Pruning's stand-ins for functional ops (add, cat, reshape, ...), which only map indices."""
    return type(module).__module__.startswith("torch_pruning")


def _output_layers(graph) -> set[nn.Module]:
    """Layers whose channels are the network's outputs (classifiers): never pruned.

    Torch-Pruning adds an output node only when the output comes from a functional op, so start
    from the graph's sinks and walk back through ops that keep the channel count.
    """
    layers: set[nn.Module] = set()
    stack = [n for n in graph.module2node.values() if not n.outputs]
    seen = set(stack)
    while stack:
        node = stack.pop()
        if isinstance(node.module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            layers.add(node.module)
            continue
        if isinstance(node.module, (ops._ReshapeOp, ops._ConcatOp, ops._SplitOp)):
            continue
        for parent in node.inputs:  # element-wise ops, norms and the output op keep the channel count
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return layers


def _forward_order(graph, model) -> list[nn.Module]:
    """Modules in the graph, in registration order (the forward order for sequential definitions)."""
    in_graph = set(graph.module2node)
    return [m for m in model.modules() if m in in_graph]


def _resolve_ignored(model: nn.Module, ignored: Iterable[nn.Module | str] | None) -> set[nn.Module]:
    result: set[nn.Module] = set()
    named = dict(model.named_modules())
    for item in ignored or ():
        if isinstance(item, str):
            matches = [m for n, m in named.items() if n == item or fnmatch.fnmatchcase(n, item)]
            if not matches:
                raise ConfigError(f"ignored layer {item!r} is not a module of the model; use a module name or pattern")
            for module in matches:
                result.update(module.modules())
        else:
            result.update(item.modules())
    return result
