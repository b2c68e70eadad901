"""Checks of a saved pruner state against the pruner it is loaded into (:meth:`BasePruner.load_state_dict`).

A state comes from a checkpoint file, so it may be from another run, another method, another model,
or damaged. Everything is checked before anything is changed: the keys, the options that give the
state its meaning (ratio, scope and the method's own, compared with the pruner's ``config``) and the
pruned channels of every unit (whole numbers, in range, unique, allowed, as many as the ratio asks).
What does not fit is one :class:`PrunerStateError` line saying what and how to fix it.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Mapping

import torch

from tpp.errors import CheckpointError, PruningError
from tpp.pruning import selection
from tpp.pruning.units import PruningUnit

STATE_VERSION = 1
# How to fix a state that is not from this pruner, said at the end of most messages.
REBUILD = "rebuild the pruner with the method and options of the saved run"
FOREIGN = "load the state that Pruner.state_dict() saved for this model and these options"


class PrunerStateError(CheckpointError, PruningError):
    """A saved pruner state that does not fit the pruner: from another run, method or model, or damaged.

    Both a :class:`CheckpointError` (it comes from a file) and a :class:`PruningError` (the pruner
    refuses it), so that either ``except`` catches it."""


def check_keys(state: Any, known: set[str], required: set[str], owner: str) -> Mapping[str, Any]:
    """The state as a mapping whose keys this pruner writes, with the ones it cannot do without."""
    if not isinstance(state, Mapping):
        raise PrunerStateError(
            f"a pruner state is the dict of Pruner.state_dict(), not a {type(state).__name__}; {FOREIGN}"
        )
    names = [k for k in state if not isinstance(k, str)]
    if names:
        raise PrunerStateError(f"the pruner state has a key {names[0]!r} that is not a name; {FOREIGN}")
    unknown = sorted(set(state) - known)
    if unknown:
        raise PrunerStateError(
            f"the pruner state has keys {unknown[:3]} that {owner} does not write: it is from "
            f"another method or schedule; {REBUILD}"
        )
    missing = sorted(required - set(state))
    if missing:
        raise PrunerStateError(
            f"the pruner state lacks {missing[:3]}: it is incomplete or from another method; {FOREIGN}"
        )
    version = state.get("version", STATE_VERSION)
    if version != STATE_VERSION or isinstance(version, bool):
        raise PrunerStateError(
            f"pruner state version {version!r} is not one this tpp reads (it writes version "
            f"{STATE_VERSION}); save the state again with this version of tpp"
        )
    if not isinstance(state.get("pruned", False), bool):
        raise PrunerStateError(f"the pruner state's 'pruned' must be true or false, not {state['pruned']!r}; {FOREIGN}")
    return state


# option -> the value a state saved before the option existed was built with
ADDED_OPTIONS = {"heads": False}


def check_config(built: Mapping[str, Any], saved: Any) -> None:
    """The options the state was saved with are the pruner's (``saved`` is the state's ``config``; a state
    without one, from before tpp saved it, is taken on trust)."""
    if saved is None:
        return
    if not isinstance(saved, Mapping):
        raise PrunerStateError(
            f"the pruner state's config must be a dict of options, not a {type(saved).__name__}; {FOREIGN}"
        )
    # options added after states were first saved: a state without one was saved with its default
    saved = {**{k: v for k, v in ADDED_OPTIONS.items() if k in built}, **saved}
    extra, lacking = sorted(set(map(str, saved)) - set(built)), sorted(set(built) - set(map(str, saved)))
    if extra or lacking:
        which = f"it has options {extra[:3]} this pruner lacks" if extra else f"it lacks options {lacking[:3]}"
        raise PrunerStateError(
            f"the pruner state is from another method ({which}); build the method of the saved run with its options"
        )
    for key in built:
        mine, theirs = built[key], saved[key]
        if key == "ratio":
            mine, theirs = _ratio(mine), _ratio(theirs)
        if not _same(mine, theirs):
            raise PrunerStateError(
                f"this pruner was built with {key}={_show(mine)} but the state is from {key}={_show(theirs)}; {REBUILD}"
            )


def _ratio(value: Any) -> Any:
    if value is None:
        return None
    try:
        spec = selection.parse_ratio(value)
    except Exception:  # noqa: BLE001 - a malformed saved ratio is only "different"
        return value
    # patterns in order: the last one that matches a layer gives its ratio
    return list(spec.items()) if isinstance(spec, Mapping) else spec


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - a comparison that fails (tensors of other shapes) is a difference
        return False


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_indices(
    saved: Any,
    candidates: Mapping[str, PruningUnit],
    planned: Mapping[str, int],
    nominal: Mapping[str, int] | None,
    global_ratio: float | None,
) -> dict[str, torch.Tensor]:
    """The state's pruned channels per unit, checked, as tensors for the pruner (root coordinates).

    ``candidates`` are the units the pruner can prune (exactly); ``planned`` the channel count per unit
    of the pruner's own selection; ``nominal`` what the per-unit ratio asks of each planned unit (None
    with ``global_ratio``, whose per-unit counts depend on the weights: only the total is bounded).
    """
    if not isinstance(saved, Mapping):
        raise PrunerStateError(
            f"the pruner state's pruned_indices must be a dict of unit -> channels, not a "
            f"{type(saved).__name__}; {FOREIGN}"
        )
    unknown = sorted(str(name) for name in saved if name not in candidates)
    if unknown:
        raise PrunerStateError(
            f"pruner state names layers {unknown[:3]} that this model cannot prune; "
            f"was it saved from another model or scope? {REBUILD}"
        )
    roots = {name: _channels(name, value, candidates[name]) for name, value in saved.items()}
    if nominal is not None:  # a per-unit ratio: the same units as this pruner's, as many channels each
        missing = sorted(set(planned) - set(roots))
        extra = sorted(set(roots) - set(planned))
        if missing or extra:
            what = f"lacks units {missing[:3]} that" if missing else f"prunes units {extra[:3]} that"
            raise PrunerStateError(
                f"the pruner state {what} this pruner prunes differently: it is from another "
                f"ratio, scope or model; {REBUILD}"
            )
        for name, chosen in roots.items():
            expected, own = nominal[name], planned[name]
            if len(chosen) != own if own == expected else len(chosen) > max(own, expected):
                raise PrunerStateError(
                    f"the pruner state prunes {len(chosen)} channels of unit {name!r}, but the "
                    f"ratio asks for {own}: it is from another ratio; {REBUILD}"
                )
    else:
        allowed = math.ceil(global_ratio * sum(u.channels for u in candidates.values()) - 1e-9)
        pruned = sum(len(c) for c in roots.values())
        if pruned > allowed:
            raise PrunerStateError(
                f"the pruner state prunes {pruned} channels, but global_ratio={global_ratio} "
                f"allows {allowed}: it is from another ratio; {REBUILD}"
            )
    return roots


def _channels(name: str, value: Any, unit: PruningUnit) -> torch.Tensor:
    """One unit's saved channels: a list of unique whole numbers that the unit may lose, at least one
    channel of every layer kept."""
    if torch.is_tensor(value) and value.dim() == 1 and not value.is_floating_point() and not value.is_complex():
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise PrunerStateError(
            f"the pruner state's channels of unit {name!r} must be a list of whole numbers, not a "
            f"{type(value).__name__}; {FOREIGN}"
        )
    if not 1 <= len(value) < unit.channels:
        raise PrunerStateError(
            f"the pruner state prunes {len(value)} channels of unit {name!r}, which has "
            f"{unit.channels} (at least 1 goes and 1 stays); {FOREIGN}"
        )
    bad = next((v for v in value if isinstance(v, bool) or not isinstance(v, Integral)), None)
    if bad is not None:
        raise PrunerStateError(
            f"the pruner state's channels of unit {name!r} hold {bad!r}, not a whole number; {FOREIGN}"
        )
    outside = next((int(v) for v in value if not 0 <= v < unit.channels), None)
    if outside is not None:
        raise PrunerStateError(
            f"the pruner state prunes channel {outside} of unit {name!r}, which has channels 0.."
            f"{unit.channels - 1}; {FOREIGN}"
        )
    seen: set[int] = set()
    for v in map(int, value):
        if v in seen:
            raise PrunerStateError(f"the pruner state lists channel {v} of unit {name!r} twice; {FOREIGN}")
        seen.add(v)
    chosen = torch.tensor([int(v) for v in value], dtype=torch.long)
    if unit.candidates is not None and not bool(torch.isin(chosen, unit.candidates).all()):
        fixed = int(chosen[~torch.isin(chosen, unit.candidates)][0])
        raise PrunerStateError(
            f"the pruner state prunes channel {fixed} of unit {name!r}, which carries an identity "
            f"shortcut and cannot go; {FOREIGN}"
        )
    guard = selection.KeepOneGuard([m.roots for m in unit.rows + unit.norms] + [torch.arange(unit.channels)])
    if not all(guard.take(int(c)) for c in chosen):
        raise PrunerStateError(f"the pruner state prunes every channel of a layer of unit {name!r}; {FOREIGN}")
    return chosen


def check_state(
    pruner: Any,  # a BasePruner (not imported: it imports this module)
    state: Any,
    total: int | None,
) -> tuple[Mapping[str, Any], list[PruningUnit], dict[str, torch.Tensor]]:
    """``state`` checked against ``pruner`` (:meth:`BasePruner.load_state_dict`, whose schedule counts at
    most ``total`` iterations), with the units and pruned channels it restores; nothing is changed."""
    schedule_keys = set(pruner.schedule.state_dict())
    owned = {"version", "pruned", "config"} | ({"pruned_indices"} if pruner.select_at == "start" else set())
    state = check_keys(
        state,
        schedule_keys | owned,
        {"iteration"} | ({"pruned_indices"} if pruner.select_at == "start" else set()),
        type(pruner).__name__,
    )
    if state.get("pruned"):
        raise PrunerStateError("this pruner state is from after prune(); load the pruned model with tpp.load_pruned")
    check_config(pruner.config, state.get("config"))
    check_iteration(state["iteration"], total)
    units, roots = pruner.units, pruner._pruned_roots
    if pruner.select_at == "start":
        global_ratio = pruner._target["global_ratio"]
        roots = check_indices(
            state["pruned_indices"],
            pruner._units_by_name,
            pruner._planned,
            pruner._nominal if global_ratio is None else None,
            global_ratio,
        )
        units = sorted((pruner._units_by_name[name] for name in roots), key=lambda u: u.order)
    return state, units, roots


def check_iteration(value: Any, total: int | None) -> int:
    """A schedule's saved iteration: a whole number from 0 to the schedule's length (if it has one)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise PrunerStateError(f"the pruner state's iteration must be a whole number >= 0, not {value!r}; {FOREIGN}")
    if total is not None and value > total:
        raise PrunerStateError(
            f"the pruner state is at iteration {value}, past the end of this pruner's schedule "
            f"({total} iterations): it is from other schedule options; {REBUILD}"
        )
    return int(value)


def state_whole(value: Any, what: str, most: float) -> int:
    """A saved whole number from 0 to ``most``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or not 0 <= value <= most:
        raise PrunerStateError(f"the pruner state's {what} {value!r} is not a whole number from 0 to {most}; {FOREIGN}")
    return int(value)


def state_number(value: Any, what: str, least: float | None = None, most: float | None = None) -> float:
    """A saved real number, from ``least`` to ``most`` if given (unbounded values may be NaN or infinite)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or (least is not None and most is not None and not least <= value <= most)
    ):
        raise PrunerStateError(f"the pruner state's {what} {value!r} is not a number from {least} to {most}; {FOREIGN}")
    return float(value)


def state_mapping(value: Any, what: str) -> Mapping:
    """A saved dict."""
    if not isinstance(value, Mapping):
        raise PrunerStateError(f"the pruner state's {what} must be a dict, not a {type(value).__name__}; {FOREIGN}")
    return value


def state_pair(value: Any, iteration: int) -> tuple[int, float]:
    """A saved ``(iteration, ratio)`` pair (the adaptive schedule's windows)."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise PrunerStateError(f"the pruner state's window {value!r} is not an (iteration, ratio) pair; {FOREIGN}")
    return state_whole(value[0], "window start", iteration), state_number(value[1], "window ratio")
