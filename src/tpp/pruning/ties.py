"""Tied parameters (``b.weight = a.weight``): kept tied through removal, or refused up front.

Torch-Pruning knows layers, not parameters: it prunes each owner of a shared ``nn.Parameter`` on its
own and gives it a new tensor, so a tie silently becomes two tensors, only one of which the re-pointed
optimizer still trains. A tie is *consistent* with a plan when every owner loses the same slices of
the shared tensor (both layers cut on the same dimension by the same indices): the owners' new
tensors are then equal, and :func:`retie` makes them one ``nn.Parameter`` again. Any other tie is
*broken* by the plan; :func:`check_ties` refuses it when the pruner is built, naming the layers.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch
import torch.nn as nn

from tpp.errors import PruningError

# One owner of a shared parameter: (qualified parameter name, owning module, attribute name).
Owner = tuple[str, nn.Module, str]


def find_ties(model: nn.Module) -> list[list[Owner]]:
    """Every parameter held by more than one module attribute, as its owners in ``named_parameters`` order.

    A module registered under two names is one owner (Torch-Pruning prunes it once); only distinct
    attributes that hold the same ``nn.Parameter`` form a tie. The first owner is the name that
    ``model.named_parameters()`` reports for the shared tensor.
    """
    owners: dict[int, list[Owner]] = defaultdict(list)
    for prefix, module in model.named_modules():
        for attr, param in module._parameters.items():
            if param is not None:
                owners[id(param)].append((f"{prefix}.{attr}" if prefix else attr, module, attr))
    return [group for group in owners.values() if len(group) > 1]


def _current(owner: Owner) -> torch.Tensor | None:
    return owner[1]._parameters.get(owner[2])


def broken_ties(ties: Sequence[list[Owner]]) -> list[list[Owner]]:
    """The ties whose owners no longer hold equal tensors (after a removal): some were cut, others not,
    or they were cut on other dimensions or by other indices. Owners that still share one tensor, or
    hold equal copies of it, are intact."""
    broken = []
    for tie in ties:
        first = _current(tie[0])
        for owner in tie[1:]:
            other = _current(owner)
            if other is first:
                continue
            if (
                first is None
                or other is None
                or other.shape != first.shape
                or other.dtype != first.dtype
                or not torch.equal(other.detach(), first.detach())
            ):
                broken.append(tie)
                break
    return broken


def retie(ties: Sequence[list[Owner]], strict: bool = True) -> None:
    """Point every owner of each tie at its first owner's tensor again (after a consistent removal).

    With ``strict=False`` broken ties are left as they are (a model pruned before tpp kept ties is
    rebuilt as it was saved).

    Raises:
        PruningError: with ``strict``, a tie is broken (the caller rolls the removal back).
    """
    broken = broken_ties(ties)
    if broken and strict:
        raise PruningError(
            f"removing the channels would untie {_names(broken[0])}; pass the layers that cut them in ignored_layers"
        )
    for tie in ties:
        if any(tie is b for b in broken):
            continue
        shared = _current(tie[0])
        for _, module, attr in tie[1:]:
            if module._parameters.get(attr) is not shared:
                module._parameters[attr] = shared


def check_ties(broken: Sequence[list[Owner]], cutters: dict[str, list[str]]) -> None:
    """Refuse a plan that breaks a tie, naming the tied layers and the units that cut them.

    ``cutters`` maps the qualified name of each tied parameter to the units whose removal touches its
    owner.

    Raises:
        PruningError: one line, saying what to do.
    """
    if not broken:
        return
    tie = broken[0]
    units = sorted({unit for owner in tie for unit in cutters.get(owner[0], [])})
    ignore = (
        f"pass {', '.join(repr(u) for u in units[:3])} in ignored_layers"
        if units
        else "pass the layers that cut them in ignored_layers"
    )
    first, other = tie[0][0], tie[1][0]
    raise PruningError(
        f"{_names(tie)} share one tensor (tied weights), and pruning would cut them differently and untie them; "
        f"{ignore}, or untie them first ({_attr(other)} = nn.Parameter({_attr(first)}.detach().clone()))"
    )


def _names(tie: Sequence[Owner]) -> str:
    names = [owner[0] for owner in tie]
    return " and ".join(names) if len(names) <= 3 else ", ".join(names[:3]) + f" (+{len(names) - 3} more)"


def _attr(name: str) -> str:
    return f"model.{name}"
