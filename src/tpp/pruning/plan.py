"""What to prune, decided once when a pruner is built: units, the channels chosen in each, what is left out.

:func:`make_plan` finds the units of the requested scope on the DependencyGraph, chooses channels
(per-unit ratios or one network-wide ratio), then *tries* the removal of exactly those channels on the
model (zeroed, removed, checked, put back) and leaves out every unit whose removal would fail or change
the outputs. What :meth:`TPPPruner.prune` later removes is therefore known to be exact before a single
training step, and everything the user asked for but will not get is said in one warning. The same
trial shows whether the plan cuts every owner of a tied parameter alike (:mod:`tpp.pruning.ties`); a
plan that would untie one is refused.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import torch
import torch.nn as nn

from tpp.errors import ConfigError, PruningError
from tpp.pruning import selection
from tpp.pruning.importance import Importance, L1Importance
from tpp.pruning.removal import trial_removal
from tpp.pruning.ties import broken_ties, check_ties, find_ties
from tpp.pruning.units import PruningUnit, Skipped, find_units
from tpp.util.modules import warn_caller

# Rounds of "select network-wide, try, leave out what fails": each round only removes units.
_MAX_GLOBAL_ROUNDS = 5


@dataclass
class PruningPlan:
    """The units to prune (forward order), their chosen channels in root coordinates, and what was left out."""

    units: list[PruningUnit]
    pruned_roots: dict[str, torch.Tensor]
    candidates: dict[str, PruningUnit] = field(default_factory=dict)  # every in-scope unit, by name
    skipped: list[Skipped] = field(default_factory=list)
    requested: int = 0  # channels the ratio asks for over all in-scope units, left-out ones included
    capped: int = 0  # units that could not lose as many channels as asked (identity-shortcut channels stay)
    ratios: dict[str, float] = field(default_factory=dict)  # the per-unit ratio of every candidate (none if global)

    def nominal(self, name: str) -> int:
        """The channels the per-unit ratio asks of unit ``name`` (identity-shortcut channels excepted)."""
        unit = self.candidates[name]
        count = selection.num_to_prune(self.ratios[name], unit.channels)
        return count if unit.candidates is None else min(count, len(unit.candidates))

    @property
    def pruned_channels(self) -> int:
        return sum(len(v) for v in self.pruned_roots.values())


def make_plan(
    module: nn.Module,
    graph_factory: Callable[[], Any],
    example_inputs: Any,
    *,
    ratio: Any,
    global_ratio: float | None,
    scope: str,
    ignored_layers: Iterable[nn.Module | str] | None,
    importance: Importance | None = None,
    broadcast: Callable[[list[torch.Tensor]], list[torch.Tensor]] = lambda chosen: chosen,
    heads: bool = False,
) -> PruningPlan:
    """Find, choose and verify what to prune (see the module docstring); warns once if less is pruned than asked.

    ``importance`` scores the channels of a unit (default: :class:`~tpp.pruning.importance.L1Importance`);
    ``broadcast`` makes every process of a distributed job take the same choice (rank 0's); ``heads``
    adds whole attention heads as units (:mod:`tpp.pruning.heads`).

    Raises:
        ConfigError: a malformed ratio.
        PruningError: nothing prunable, or nothing left to prune; the message says what to change.
    """
    if global_ratio is None and ratio is None:
        raise ConfigError("give ratio= (float or pattern mapping) or global_ratio=")
    graph = graph_factory()
    units, skipped = find_units(module, graph, scope, ignored_layers, heads=heads)
    if not units:
        raise PruningError(_nothing_prunable(module, graph, scope, ignored_layers, skipped))
    candidates = {u.name: u for u in units}
    spec = selection.parse_ratio(global_ratio if global_ratio is not None else ratio)
    importance = importance or L1Importance()
    scores = {u.name: importance(u) for u in units}
    unit_ratio: dict[str, float] = {}
    if global_ratio is None:
        try:
            ratios = selection.layer_ratios([u.row_names for u in units], spec)
        except PruningError as error:
            raise PruningError(_pattern_hint(str(error), module, graph, scope, ignored_layers, spec, skipped)) from None
        unit_ratio = {u.name: r for u, r in zip(units, ratios)}
        requested = sum(selection.num_to_prune(unit_ratio[u.name], u.channels) for u in units)
        requested += sum(selection.num_to_prune(_ratio_of(s.name, spec), s.channels) for s in skipped)
    else:
        requested = selection.num_to_prune(
            global_ratio, sum(u.channels for u in units) + sum(s.channels for s in skipped)
        )

    ties = find_ties(module)
    broken: list = []  # the ties that the last trial's removal broke

    def inspect_ties() -> None:
        broken[:] = broken_ties(ties)

    kept = list(units)
    aliases: dict[str, torch.Tensor] = {}  # alias classes of the units where they were found
    for _ in range(_MAX_GLOBAL_ROUNDS):
        graph = graph if graph is not None else graph_factory()
        chosen = _choose(kept, scores, aliases, global_ratio, unit_ratio if global_ratio is None else None)
        aliased = [
            u
            for u, c in zip(kept, chosen)
            if u.name not in aliases and u.heads is None and len(_removed_roots(graph, u, c)) > len(c)
        ]
        if aliased:  # Torch-Pruning removes more than chosen: choose again among whole alias classes
            aliases.update({u.name: _alias_classes(graph, u) for u in aliased})
            chosen = _choose(kept, scores, aliases, global_ratio, unit_ratio if global_ratio is None else None)
        chosen = broadcast(chosen)
        pruned_roots = {u.name: c for u, c in zip(kept, chosen) if len(c) > 0}
        selected = [u for u in kept if u.name in pruned_roots]
        failures = trial_removal(
            module, graph_factory, selected, pruned_roots, example_inputs, graph, inspect_ties if ties else None
        )
        graph = None  # used up by the trial
        if not failures:
            break
        skipped += [Skipped(name, kind, detail, candidates[name].channels) for name, (kind, detail) in failures.items()]
        kept = [u for u in kept if u.name not in failures]
        if global_ratio is None:  # the other units' choices do not depend on the ones left out
            pruned_roots = {k: v for k, v in pruned_roots.items() if k not in failures}
            selected = [u for u in selected if u.name not in failures]
            break
    else:
        raise PruningError(
            "could not find a set of units that prunes exactly; pass the layers named in the warnings in ignored_layers"
        )
    if not selected:
        if skipped:
            raise PruningError(f"nothing can be pruned exactly with scope={scope!r}: " + "; ".join(_reasons(skipped)))
        raise PruningError(
            "the ratio selects no filter to prune (it rounds down to 0 in every layer); use a larger ratio"
        )
    check_ties(broken, _cutters(broken, selected))
    plan = PruningPlan(selected, pruned_roots, candidates, skipped, requested, ratios=unit_ratio)
    if global_ratio is None:
        plan.capped = sum(
            1
            for u in kept
            if u.candidates is not None and selection.num_to_prune(unit_ratio[u.name], u.channels) > len(u.candidates)
        )
    _warn_if_less_than_asked(plan)
    return plan


def _cutters(ties: list, units: list[PruningUnit]) -> dict[str, list[str]]:
    """For each tied parameter's name, the units whose removal touches its owner layer."""
    touched = {u.name: {id(dep.target.module) for dep, _ in u.group} for u in units if u.group is not None}
    return {
        name: [u for u, modules in touched.items() if id(module) in modules] for tie in ties for name, module, _ in tie
    }


def _choose(
    units: list[PruningUnit],
    scores: dict[str, torch.Tensor],
    aliases: dict[str, torch.Tensor],
    global_ratio: float | None,
    unit_ratio: dict[str, float] | None,
) -> list[torch.Tensor]:
    """Root channels to prune per unit. In a unit with alias classes (root channels that Torch-Pruning
    can only remove together), whole classes are chosen and counted as one channel each."""
    spaces = [_ClassSpace(u, scores[u.name], aliases.get(u.name)) for u in units]
    if global_ratio is not None:
        picked = selection.global_selection(
            [sp.scores for sp in spaces],
            global_ratio,
            [sp.candidates for sp in spaces],
            [sp.member_roots for sp in spaces],
        )
    else:
        picked = []
        for unit, space in zip(units, spaces):
            count = selection.num_to_prune(unit_ratio[unit.name], len(space.scores))
            if space.candidates is not None:
                count = min(count, len(space.candidates))
            picked.append(selection.smallest(space.scores, count, space.candidates, space.member_roots))
    return [space.expand(p) for space, p in zip(spaces, picked)]


class _ClassSpace:
    """A unit's channels seen as alias classes (each its own class when there are no aliases)."""

    def __init__(self, unit: PruningUnit, score: torch.Tensor, classes: torch.Tensor | None):
        self.classes = classes
        members = [m.roots for m in unit.rows + unit.norms]
        if classes is None:
            self.scores, self.candidates, self.member_roots = score, unit.candidates, members
            return
        count = int(classes.max()) + 1
        self.scores = torch.zeros(count).index_add_(0, classes, score.float())
        self.member_roots = [torch.unique(classes[roots]) for roots in members]
        self.candidates = None
        if unit.candidates is not None:  # a class is eligible only if every channel in it is
            allowed = torch.zeros(len(classes), dtype=torch.bool)
            allowed[unit.candidates] = True
            bad = torch.unique(classes[~allowed])
            self.candidates = torch.tensor([c for c in range(count) if c not in set(bad.tolist())], dtype=torch.long)

    def expand(self, picked: torch.Tensor) -> torch.Tensor:
        if self.classes is None:
            return picked
        return torch.isin(self.classes, picked).nonzero().flatten()


def _removed_roots(graph: Any, unit: PruningUnit, roots: torch.Tensor) -> torch.Tensor:
    """The root channels that Torch-Pruning really removes when asked to remove ``roots``."""
    if len(roots) == 0:
        return roots
    group = graph.get_pruning_group(unit.root, graph.get_pruner_of_module(unit.root).prune_out_channels, roots.tolist())
    removed = {
        int(i)
        for dep, idxs in group
        if dep.target.module is unit.root and graph.is_out_channel_pruning_fn(dep.handler)
        for i in idxs
    }
    return torch.tensor(sorted(removed), dtype=torch.long)


def _alias_classes(graph: Any, unit: PruningUnit) -> torch.Tensor:
    """Class id per root channel: channels that Torch-Pruning removes together share one (GhostNet's
    concat of a convolution with its depthwise "cheap" copy ties channel c to channel c + C/2)."""
    classes = torch.full((unit.channels,), -1, dtype=torch.long)
    count = 0
    for root in range(unit.channels):
        if classes[root] < 0:
            together = _removed_roots(graph, unit, torch.tensor([root]))
            classes[together[classes[together] < 0]] = count
            count += 1
    return classes


def _ratio_of(name: str, spec: Any) -> float:
    if not isinstance(spec, Mapping):
        return float(spec)
    resolved = 0.0
    for pattern, value in spec.items():
        if selection.matches(name, pattern):
            resolved = value
    return resolved


def _reasons(skipped: list[Skipped], limit: int = 3) -> list[str]:
    by_kind: dict[str, list[Skipped]] = defaultdict(list)
    for item in skipped:
        by_kind[item.kind].append(item)
    lines = []
    for kind, items in by_kind.items():
        names = ", ".join(s.name for s in items[:limit]) + (
            f" (+{len(items) - limit} more)" if len(items) > limit else ""
        )
        example = f" [{items[0].detail}]" if items[0].detail else ""
        lines.append(f"{len(items)} unit{'s' if len(items) > 1 else ''} whose channels {kind}{example}: {names}")
    return lines


def _warn_if_less_than_asked(plan: PruningPlan) -> None:
    if plan.pruned_channels >= plan.requested:
        return
    parts = _reasons(plan.skipped)
    if plan.capped:
        parts.append(
            f"{plan.capped} unit{'s' if plan.capped > 1 else ''} can lose only the channels that carry "
            "no identity shortcut"
        )
    if not parts:
        parts.append("every layer of a coupled unit keeps at least one channel")
    warn_caller(
        f"tpp: pruning {plan.pruned_channels} of the {plan.requested} channels asked for; left whole: "
        + "; ".join(parts)
    )


def _nothing_prunable(module, graph, scope, ignored_layers, skipped) -> str:
    text = f"no prunable layer found with scope={scope!r}"
    if skipped:
        text += ": " + "; ".join(_reasons(skipped))
    if scope == "internal":
        others, _ = find_units(module, graph, "all", ignored_layers)
        if others:
            return text + f"; scope='all' can prune {len(others)} groups of residual-coupled channels"
    if ignored_layers:
        return text + "; fewer ignored_layers would leave more to prune"
    if skipped:
        return text + "; tpp cannot remove these channels exactly, so the model cannot be pruned"
    return text + "; the model has no Conv/Linear layer whose output channels can go (classifier outputs never do)"


def _pattern_hint(message: str, module, graph, scope, ignored_layers, spec, skipped=()) -> str:
    """Say why a pattern's layers are left whole, if they are; suggest scope='all' only where it is true:
    every pattern then matches a unit."""
    if isinstance(spec, Mapping):
        whole = [s for s in skipped if any(selection.matches(s.name, p) for p in spec)]
        if whole:
            return (
                message.replace("; fix the pattern", "")
                + "; it matches only units left whole: "
                + "; ".join(_reasons(whole, limit=2))
            )
    if scope == "internal" and isinstance(spec, Mapping):
        others, _ = find_units(module, graph, "all", ignored_layers)
        names = [n for u in others for n in u.row_names]
        if all(any(selection.matches(n, p) for n in names) for p in spec):
            return message + ", or use scope='all': these layers are residual-coupled"
    return message
