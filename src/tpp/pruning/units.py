"""Pruning units: sets of coupled output channels, found with Torch-Pruning's DependencyGraph.

A *unit* is one DependencyGraph group rooted at a Conv/Linear layer. Removing root channel ``c``
removes, in every member, the slice that the graph maps to ``c``:

* ``rows``: Conv/Linear layers whose output filters go (TPP's gram penalty and growing L2 act on them),
  depthwise convolutions that carry the channels included;
* ``norms``: BatchNorm/InstanceNorm layers whose gamma/beta go (TPP's BN term, Eq. 5);
* ``params``: bare per-channel ``nn.Parameter`` tensors (layer scale, tokens), zeroed like gamma/beta;
* consumers' input channels, concat offsets, reshapes: handled by the graph at removal time.

``scope="internal"`` keeps only units produced by one layer (depthwise convolutions aside, and a gated
MLP's gate and up projections, which read one tensor and are multiplied together): channels not
tied to a residual add or to another block, which is what the paper prunes (the first layer of
each residual block, docs/method.md#layers). ``scope="all"`` keeps every unit whose zeroed channels can be removed without
changing the network's function. Units whose channels meet a normalisation with cross-channel
statistics, a grouped convolution or an unknown layer are left out and reported as :class:`Skipped`.
Layers are Conv1d/Conv2d/Linear and ``transformers``' ``Conv1D`` (:mod:`tpp.pruning.layers`). Channels
that a reshape splits into attention heads are never searched (RoPE's slicing makes the search run
away) and are left out as such; with ``heads=True`` whole heads are units of their own
(:mod:`tpp.pruning.heads`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.nn as nn
import torch_pruning as tp
from torch_pruning import ops

from tpp.errors import ConfigError
from tpp.pruning.graph import all_groups, splits_channels
from tpp.pruning.heads import find_layouts, undescribable
from tpp.pruning.ignored_layers import output_layers, resolve_ignored
from tpp.pruning.layers import filter_dim, is_weight_layer
from tpp.pruning.structure import gated_rows, head_split, is_joint_norm, reduces_channels

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
    group: Any = None  # the full Torch-Pruning group (for Torch-Pruning importance criteria)
    gated: bool = False  # the rows read one tensor and are multiplied together (a gated MLP's gate and up)
    heads: Any = None  # a tpp.pruning.heads.HeadLayout: the channels are its key/value groups, cut by tpp

    @property
    def row_names(self) -> list[str]:
        return [m.name for m in self.rows]

    @property
    def internal(self) -> bool:
        """True if one layer produces these channels: not tied to a residual add or to another block.

        A depthwise convolution only carries the channels on (one filter per channel), so it does not
        make a block's expansion channels shared, as in MobileNet blocks. Nor do the gate and up
        projections of a gated MLP (:func:`tpp.pruning.structure.gated_rows`): they read one tensor and
        are multiplied together, and only the block's down projection sees the product."""
        return self.heads is not None or self.gated or sum(not _is_depthwise(m.module) for m in self.rows) == 1

    def tensors(self, roots: torch.Tensor) -> list[tuple[torch.Tensor | None, torch.Tensor, int]]:
        """``(tensor, local indices, dim)`` of everything that holds the given root channels and is zeroed
        with them: filters and biases of the rows, gamma/beta of the norms, the bare parameters."""
        out: list[tuple[torch.Tensor | None, torch.Tensor, int]] = []
        for member in self.rows + self.norms:
            rows = member.local_indices(roots)
            out += [
                (getattr(member.module, "weight", None), rows, member.dim),
                (getattr(member.module, "bias", None), rows, 0),
            ]
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
SEARCH_EXPLODES = (
    "make Torch-Pruning's dependency search run away (partial-channel slicing such as x[:, :C] += shortcut)"
)
MISMAPPED = (
    "are mapped by Torch-Pruning to indices outside their layers (a fused projection split after a "
    "reshape, e.g. a fused query/key/value)"
)
HEADS_UNDESCRIBED = "are attention heads that the model's config could not describe once removed"
REMOVAL_FAILS = "cannot be removed (typically a reshape or split into attention heads or chunks)"
REMOVAL_INEXACT = "would change the outputs if removed"


def find_units(
    model: nn.Module,
    graph: tp.DependencyGraph,
    scope: str = "internal",
    ignored_layers: Iterable[nn.Module | str] | None = None,
    heads: bool = False,
) -> tuple[list[PruningUnit], list[Skipped]]:
    """All prunable units of ``model`` in forward order for the given scope, and the in-scope units left out.

    ``heads`` adds whole attention heads (:mod:`tpp.pruning.heads`) as units."""
    if scope not in SCOPES:
        raise ConfigError(f"unknown scope {scope!r}: use 'internal' (the paper's) or 'all' (residual-coupled too)")
    names = {module: name for name, module in model.named_modules()}
    names.update({p: name for name, p in model.named_parameters()})
    dims = {p: int(dim) for p, dim in graph.unwrapped_parameters}
    ignored = resolve_ignored(model, ignored_layers) | output_layers(graph)
    layer_order = [m for m in _forward_order(graph, model) if is_weight_layer(m)]
    position = {m: i for i, m in enumerate(layer_order)}

    units, skipped = [], []
    for root, group in all_groups(graph, list(ignored), skip=lambda module: head_split(graph, module) is not None):
        if group is None:  # Torch-Pruning's search did not terminate for this root
            split = head_split(graph, root)
            if split is not None:  # e.g. RoPE's rotate_half slices each head: the true reason is the heads
                skipped.append(
                    Skipped(
                        names.get(root, str(root)),
                        SPLIT,
                        f"{split[0]} -> {split[1]}",
                        graph.get_out_channels(root) or 0,
                    )
                )
            elif scope == "all":
                skipped.append(
                    Skipped(names.get(root, str(root)), SEARCH_EXPLODES, "", graph.get_out_channels(root) or 0)
                )
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
    if heads:
        _add_head_units(model, names, ignored, position, units, skipped)
    units.sort(key=lambda u: u.order)
    return units, skipped


def _add_head_units(model, names, ignored, position, units, skipped) -> None:
    """Whole attention heads (key/value groups) as units (:mod:`tpp.pruning.heads`); their projections'
    channel units, left out as "split into attention heads", are then no longer reported."""
    layouts = find_layouts(model, ignored)
    taken = {names[m] for lay in layouts for m in (lay.q, lay.k, lay.v)}
    skipped[:] = [s for s in skipped if s.name not in taken]
    for lay in layouts:
        groups = torch.arange(lay.kv_heads)
        unit = PruningUnit(name=lay.name, root=lay.q, channels=lay.kv_heads, heads=lay)
        for module, width in ((lay.q, lay.group_size * lay.head_dim), (lay.k, lay.head_dim), (lay.v, lay.head_dim)):
            unit.rows.append(
                Member(names[module], module, groups.repeat_interleave(width), torch.arange(lay.kv_heads * width))
            )
        unit.order = position.get(lay.q, len(position))
        reason = undescribable(lay)
        if reason is not None:
            skipped.append(Skipped(lay.name, HEADS_UNDESCRIBED, reason, lay.kv_heads))
        elif lay.kv_heads > 1:
            units.append(unit)


def _is_depthwise(module) -> bool:
    return (
        isinstance(module, (nn.Conv1d, nn.Conv2d))
        and module.groups > 1
        and module.groups == module.in_channels == module.out_channels
    )


def _unit_from_group(group, graph, names, dims) -> tuple[PruningUnit | None, tuple[str, str] | None]:
    root = group[0].dep.target.module
    unit = PruningUnit(name=names.get(root, str(root)), root=root, channels=len(group[0].idxs), group=group)
    problem = None
    split = head_split(graph, root)
    if split is not None:  # heads go whole or not at all, whatever Torch-Pruning maps further on
        problem = (SPLIT, f"{split[0]} -> {split[1]}")
    mismapped = None
    for item in group:
        module, handler = item.dep.target.module, item.dep.handler
        is_out = graph.is_out_channel_pruning_fn(handler) and not graph.is_in_channel_pruning_fn(handler)
        if any(i is None for i in item.root_idxs) or any(i is None or i < 0 for i in item.idxs):
            if is_out and is_weight_layer(module):
                unit.rows.append(
                    Member(
                        names.get(module, type(module).__name__),
                        module,
                        torch.zeros(0, dtype=torch.long),
                        torch.zeros(0, dtype=torch.long),
                        filter_dim(module),
                    )
                )
            mismapped = mismapped or (MISMAPPED, names.get(module, type(module).__name__))
            continue
        member = Member(
            names.get(module, type(module).__name__),
            module,
            torch.as_tensor(item.root_idxs, dtype=torch.long),
            torch.as_tensor(item.idxs, dtype=torch.long),
            filter_dim(module),
        )
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            if module.groups > 1 and not _is_depthwise(module):
                problem = (GROUPED_CONV, f"{member.name} (groups={module.groups})")
            elif is_out or _is_depthwise(module):
                unit.rows.append(member)
        elif is_weight_layer(module):  # nn.Linear, transformers' Conv1D
            if is_out:
                unit.rows.append(member)
        elif isinstance(module, _JOINT_NORM_TYPES) or is_joint_norm(module):
            problem = (JOINT_NORM, f"{type(module).__name__} {member.name}")
        elif isinstance(module, _NORM_TYPES):
            if getattr(module, "weight", None) is not None or isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                unit.norms.append(member)
        elif hasattr(module, "tpp_fixed_channels"):  # a graph.ChannelLayer that copies some channels
            if is_out:
                allowed = member.roots[~module.tpp_fixed_channels(member.local)]
                unit.candidates = (
                    allowed if unit.candidates is None else unit.candidates[torch.isin(unit.candidates, allowed)]
                )
        elif isinstance(module, nn.Parameter):
            member.dim = dims.get(module, module.dim() - 1)
            if len(member.local) and int(member.local.max()) >= module.shape[member.dim]:
                problem = (UNSUPPORTED, f"parameter {member.name} {tuple(module.shape)} does not hold them")
            else:
                unit.params.append(member)
        elif reduces_channels(graph, module):
            problem = (JOINT_NORM, "a mean over the channel dimension, as an RMSNorm/LayerNorm computes")
        elif isinstance(module, ops._ReshapeOp):
            if splits_channels(graph, module, len(item.idxs)):
                before, after = graph.tpp_reshape_shapes[graph.module2node[module].grad_fn]
                problem = (SPLIT, f"{list(before)} -> {list(after)}")
        elif isinstance(module, nn.Module) and not isinstance(module, _PASS_THROUGH_TYPES) and not _is_graph_op(module):
            if problem is None or problem[0] != JOINT_NORM:  # a joint norm is the deeper reason
                problem = (UNSUPPORTED, f"{type(module).__name__} {member.name}")
    if not unit.rows:
        return None, None
    if split is not None:
        problem = (SPLIT, f"{split[0]} -> {split[1]}")
    elif mismapped is not None:
        problem = mismapped
    unit.gated = gated_rows(graph, [m.module for m in unit.rows if not _is_depthwise(m.module)])
    if problem is None:
        problem = _inconsistent_member(unit)
    return unit, problem


def _inconsistent_member(unit: PruningUnit) -> tuple[str, str] | None:
    """A member whose mapped indices lie outside its own size (Torch-Pruning's mapping of partial
    channel slices can produce these); such a unit cannot be regularised or removed reliably."""
    for member in unit.rows + unit.norms:
        size = (
            member.module.weight.shape[member.dim]
            if getattr(member.module, "weight", None) is not None
            else getattr(member.module, "num_features", None)
        )
        if size is not None and len(member.local) and int(member.local.max()) >= size:
            return UNSUPPORTED, f"{member.name} does not hold channel {int(member.local.max())} that is mapped to it"
    return None


def _is_graph_op(module) -> bool:
    """Torch-Pruning's stand-ins for functional ops (add, cat, reshape, ...), which only map indices."""
    return type(module).__module__.startswith("torch_pruning")


def _forward_order(graph, model) -> list[nn.Module]:
    """Modules in the graph, in registration order (the forward order for sequential definitions)."""
    in_graph = set(graph.module2node)
    return [m for m in model.modules() if m in in_graph]
