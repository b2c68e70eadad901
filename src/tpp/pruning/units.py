"""Pruning units: sets of coupled output channels, found with Torch-Pruning's DependencyGraph.

A *unit* is one DependencyGraph group rooted at a Conv/Linear layer. Removing root channel ``c``
removes, in every member, the slice that the graph maps to ``c``:

* ``rows``: Conv/Linear layers whose output filters go (TPP's gram penalty and growing L2 act on them),
  depthwise convolutions that carry the channels included;
* ``norms``: BatchNorm/InstanceNorm layers whose gamma/beta go (TPP's BN term, Eq. 5);
* ``params``: bare per-channel ``nn.Parameter`` tensors (layer scale, tokens), zeroed like gamma/beta;
* consumers' input channels, concat offsets, reshapes: handled by the graph at removal time.

``scope="internal"`` keeps only units produced by one layer (depthwise convolutions aside): channels not
tied to a residual add or to another block, which is what the paper prunes (Sec. 4: the first layer of
each residual block). ``scope="all"`` keeps every unit whose zeroed channels can be removed without
changing the network's function. Units whose channels meet a normalisation with cross-channel
statistics, a grouped convolution or an unknown layer are left out and reported as :class:`Skipped`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.nn as nn
import torch_pruning as tp
from torch.overrides import TorchFunctionMode
from torch_pruning import ops
from torch_pruning.dependency import group as tp_group

from tpp.errors import ConfigError, PruningError
from tpp.models.layers import ChannelPadShortcut
from tpp.pruning.shortcut_pruner import ChannelPadShortcutPruner
from tpp.pruning.tp_compat import apply_guards

apply_guards()


# Per-channel affine layers whose gamma/beta are zeroed and removed with the channel.
_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d)
# Normalisations whose statistics span the channels: removing a zeroed channel changes every other one.
_JOINT_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
# Layers whose channel slice is removed exactly, with no statistics shared across channels.
_PASS_THROUGH_TYPES = (nn.PReLU,)
SCOPES = ("internal", "all")


@dataclass
class Member:
    """One tensor-owner touched by a unit: ``local[i]`` is its index (along ``dim``) for the unit's channel ``roots[i]``."""

    name: str
    module: nn.Module | nn.Parameter
    roots: torch.Tensor
    local: torch.Tensor
    dim: int = 0  # the pruned dimension (a bare nn.Parameter's may be its last one)

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
    # bare per-channel nn.Parameters (layer scale, class token, ...): zeroed and regularised like BN gamma/beta
    params: list[Member] = field(default_factory=list)
    # Root channels allowed to be pruned (None: all). Channels that carry an identity copy of another
    # layer's output (option-A shortcut) can never be zeroed by regularisation, so they stay.
    candidates: torch.Tensor | None = None
    order: int = 0  # position of the root among all Conv/Linear layers, forward order (zero-out order)

    @property
    def row_names(self) -> list[str]:
        return [m.name for m in self.rows]

    @property
    def internal(self) -> bool:
        """True if one layer produces these channels: not tied to a residual add or to another block.

        A depthwise convolution only carries the channels on (one filter per channel), so it does not
        make a block's expansion channels shared, as in MobileNet blocks."""
        return sum(not _is_depthwise(m.module) for m in self.rows) == 1

    def tensors(self, roots: torch.Tensor) -> list[tuple[torch.Tensor | None, torch.Tensor, int]]:
        """``(tensor, local indices, dim)`` of everything that holds the given root channels and is zeroed
        with them: filters and biases of the rows, gamma/beta of the norms, the bare parameters."""
        out: list[tuple[torch.Tensor | None, torch.Tensor, int]] = []
        for member in self.rows + self.norms:
            rows = member.local_indices(roots)
            out += [(getattr(member.module, "weight", None), rows, 0), (getattr(member.module, "bias", None), rows, 0)]
        out += [(m.module, m.local_indices(roots), m.dim) for m in self.params]
        return out


@dataclass(frozen=True)
class Skipped:
    """A unit left unpruned, and why (``kind`` groups the reasons for one warning line)."""

    name: str
    kind: str
    detail: str
    channels: int


# why a unit is left out, worded to follow "units whose channels ..." in the warning
JOINT_NORM = "are normalised jointly (LayerNorm/GroupNorm/RMSNorm statistics span them)"
GROUPED_CONV = "reach a grouped convolution"
UNSUPPORTED = "reach a layer tpp does not prune"
SHORTCUT_ONLY = "all carry an identity shortcut"
SPLIT = "are split into attention heads or chunks by a reshape"
SEARCH_EXPLODES = ("make Torch-Pruning's dependency search run away (partial-channel slicing such as "
                   "x[:, :C] += shortcut)")
REMOVAL_FAILS = "cannot be removed (typically a reshape or split into attention heads or chunks)"
REMOVAL_INEXACT = "would change the outputs if removed"


class _ReshapeRecorder(TorchFunctionMode):
    """Records the input and output shape of every reshape of the traced forward pass, keyed by the
    output's autograd node: Torch-Pruning keeps only the node, and whether a reshape splits the
    channels (into attention heads) depends on the shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: dict[Any, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in _RESHAPES and torch.is_tensor(out) and out.grad_fn is not None and args and torch.is_tensor(args[0]):
            self.shapes[out.grad_fn] = (tuple(args[0].shape), tuple(out.shape))
        return out


_RESHAPES = {torch.Tensor.view, torch.Tensor.reshape, torch.reshape, torch.Tensor.unflatten, torch.unflatten}


def build_graph(model: nn.Module, example_inputs) -> tp.DependencyGraph:
    """Build Torch-Pruning's DependencyGraph without leaving the model in eval mode (a TP pitfall).

    ``example_inputs`` is a tensor, a tuple (positional arguments) or a dict (keyword arguments).

    Raises:
        PruningError: the model does not run on ``example_inputs``.
    """
    was_training = {m: m.training for m in model.modules()}
    recorder = _ReshapeRecorder()
    try:
        with torch.enable_grad(), recorder:
            graph = tp.DependencyGraph().build_dependency(
                model,
                example_inputs=dict(example_inputs) if isinstance(example_inputs, Mapping) else example_inputs,
                customized_pruners={ChannelPadShortcut: ChannelPadShortcutPruner()},
                verbose=False,
            )
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError) as error:
        text = " ".join(str(error).split())[:200]
        raise PruningError(f"tracing the model on example_inputs failed ({type(error).__name__}: {text}); "
                           "check that model(example_inputs) runs (a dict is passed as keyword arguments, "
                           "a tuple as positional ones)") from None
    finally:
        for module, mode in was_training.items():
            module.train(mode)
    graph.tpp_reshape_shapes = recorder.shapes
    return graph


def _splits_channels(graph, op, channels: int) -> bool:
    """Whether reshape ``op`` cuts a dimension of ``channels`` into several (attention heads, chunks).

    Flattening merges channels with other dimensions and keeps each channel a contiguous block, which
    Torch-Pruning maps exactly; a split such as ``[B, N, C] -> [B, N, heads, C / heads]`` does not."""
    node = graph.module2node.get(op)
    shapes = getattr(graph, "tpp_reshape_shapes", {}).get(getattr(node, "grad_fn", None))
    if shapes is None:
        return False
    before, after = shapes
    return len(after) > len(before) and channels in before and channels not in after


def find_units(
    model: nn.Module,
    graph: tp.DependencyGraph,
    scope: str = "internal",
    ignored_layers: Iterable[nn.Module | str] | None = None,
) -> tuple[list[PruningUnit], list[Skipped]]:
    """All prunable units of ``model`` in forward order for the given scope, and the in-scope units left out."""
    if scope not in SCOPES:
        raise ConfigError(f"unknown scope {scope!r}: use 'internal' (the paper's) or 'all' (residual-coupled too)")
    names = {module: name for name, module in model.named_modules()}
    names.update({p: name for name, p in model.named_parameters()})
    dims = {p: int(dim) for p, dim in graph.unwrapped_parameters}
    ignored = _resolve_ignored(model, ignored_layers) | _output_layers(graph)
    layer_order = [m for m in _forward_order(graph, model) if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Linear))]
    position = {m: i for i, m in enumerate(layer_order)}

    units, skipped = [], []
    for root, group in _all_groups(graph, list(ignored)):
        if group is None:  # Torch-Pruning's search did not terminate for this root
            if scope == "all":
                skipped.append(Skipped(names.get(root, str(root)), SEARCH_EXPLODES, "", graph.get_out_channels(root) or 0))
            continue
        unit, problem = _unit_from_group(group, graph, names, dims)
        if unit is None or (scope == "internal" and not unit.internal):
            continue
        if problem is None and unit.candidates is not None and len(unit.candidates) == 0:
            problem = (SHORTCUT_ONLY, "")
        if problem is not None:
            skipped.append(Skipped(unit.name, problem[0], problem[1], unit.channels))
            continue
        unit.order = position.get(unit.root, len(position))
        units.append(unit)
    units.sort(key=lambda u: u.order)
    return units, skipped


# Torch-Pruning revisits a node whenever it reaches it with a different index list, so partial-channel
# slicing around residual chains (ReXNet's x[:, :C] += shortcut) makes the search run for hours.
# Legitimate groups add a few dependencies per graph node (at most ~0.5 per node seen on timm's zoo).
DEPENDENCIES_PER_NODE = 8
MIN_DEPENDENCIES = 1000
# Upper bound on the whole search, whatever the model: past it, building the pruner fails.
SEARCH_SECONDS = 300.0


class _SearchExploded(Exception):
    pass


@contextlib.contextmanager
def _bounded_search(graph: tp.DependencyGraph):
    """Count the dependencies Torch-Pruning adds to the group being built and stop runaway searches.

    Torch-Pruning offers no hook to bound ``get_pruning_group``, so ``Group.add_dep`` is wrapped for the
    duration (and restored): past the bound the group is abandoned; past :data:`SEARCH_SECONDS` in
    all, a :class:`PruningError` says what to do."""
    limit = max(MIN_DEPENDENCIES, DEPENDENCIES_PER_NODE * len(graph.module2node))
    deadline = time.monotonic() + SEARCH_SECONDS
    original = tp_group.Group.add_dep
    state = {"count": 0}

    def add_dep(group, dep, idxs):
        state["count"] += 1
        if state["count"] > limit:
            raise _SearchExploded
        if state["count"] % 64 == 0 and time.monotonic() > deadline:
            raise PruningError(f"finding the coupled channels took more than {SEARCH_SECONDS:.0f} s; pass the "
                               "blocks with unusual channel slicing in ignored_layers")
        return original(group, dep, idxs)

    tp_group.Group.add_dep = add_dep
    try:
        yield state
    finally:
        tp_group.Group.add_dep = original


def _all_groups(graph: tp.DependencyGraph, ignored: list[nn.Module]):
    """``(root, group)`` for every Conv/Linear root, as ``DependencyGraph.get_all_groups`` enumerates them,
    with ``group=None`` for roots whose dependency search had to be stopped."""
    visited: set[nn.Module] = set()
    ignored = ignored + list(graph.IGNORED_LAYERS_IN_TRACING)
    ignored_set = set(ignored)
    with _bounded_search(graph) as search:
        for module in list(graph.module2node):
            if module in ignored_set or not isinstance(module, (nn.Conv2d, nn.Conv1d, nn.Linear)) or module in visited:
                continue
            pruner = graph.get_pruner_of_module(module)
            if pruner is None or pruner.get_out_channels(module) is None:
                continue
            search["count"] = 0
            try:
                group = graph.get_pruning_group(module, pruner.prune_out_channels,
                                                list(range(pruner.get_out_channels(module))))
            except _SearchExploded:
                visited.add(module)
                yield module, None
                continue
            prunable = True
            for dep, _ in group:
                if graph.is_out_channel_pruning_fn(dep.handler):
                    visited.add(dep.target.module)
                    prunable = prunable and dep.target.module not in ignored_set
            if prunable:
                yield module, group


def _is_depthwise(module) -> bool:
    return (isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.groups > 1
            and module.groups == module.in_channels == module.out_channels)


def _unit_from_group(group, graph, names, dims) -> tuple[PruningUnit | None, tuple[str, str] | None]:
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
            if module.groups > 1 and not _is_depthwise(module):
                problem = (GROUPED_CONV, f"{member.name} (groups={module.groups})")
            elif is_out or _is_depthwise(module):
                unit.rows.append(member)
        elif isinstance(module, nn.Linear):
            if is_out:
                unit.rows.append(member)
        elif isinstance(module, _JOINT_NORM_TYPES):
            problem = (JOINT_NORM, f"{type(module).__name__} {member.name}")
        elif isinstance(module, _NORM_TYPES):
            if getattr(module, "weight", None) is not None or isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                unit.norms.append(member)
        elif isinstance(module, ChannelPadShortcut):
            if is_out:
                zero = module.source_index[member.local] < 0
                allowed = member.roots[zero]
                unit.candidates = allowed if unit.candidates is None else unit.candidates[torch.isin(unit.candidates, allowed)]
        elif isinstance(module, nn.Parameter):
            member.dim = dims.get(module, module.dim() - 1)
            if len(member.local) and int(member.local.max()) >= module.shape[member.dim]:
                problem = (UNSUPPORTED, f"parameter {member.name} {tuple(module.shape)} does not hold them")
            else:
                unit.params.append(member)
        elif isinstance(module, ops._ReshapeOp):
            if _splits_channels(graph, module, len(item.idxs)):
                before, after = graph.tpp_reshape_shapes[graph.module2node[module].grad_fn]
                problem = (SPLIT, f"{list(before)} -> {list(after)}")
        elif isinstance(module, nn.Module) and not isinstance(module, _PASS_THROUGH_TYPES) and not _is_graph_op(module):
            problem = (UNSUPPORTED, f"{type(module).__name__} {member.name}")
    if not unit.rows:
        return None, None
    if problem is None:
        problem = _inconsistent_member(unit)
    return unit, problem


def _inconsistent_member(unit: PruningUnit) -> tuple[str, str] | None:
    """A member whose mapped indices lie outside its own size (Torch-Pruning's mapping of partial
    channel slices can produce these); such a unit cannot be regularised or removed reliably."""
    for member in unit.rows + unit.norms:
        size = member.module.weight.shape[0] if getattr(member.module, "weight", None) is not None \
            else getattr(member.module, "num_features", None)
        if size is not None and len(member.local) and int(member.local.max()) >= size:
            return UNSUPPORTED, f"{member.name} does not hold channel {int(member.local.max())} that is mapped to it"
    return None


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
