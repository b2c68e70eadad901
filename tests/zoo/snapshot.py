"""Everything a failed ``prune()`` must leave as it was: weights, buffers, shapes, layer attributes
(head counts, widths), the parameter objects themselves and the optimizer's parameters and state."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

_PLAIN = (int, float, bool, str, type(None))


def _plain_attributes(module: nn.Module) -> dict[str, Any]:
    """Attributes such as ``in_channels``, ``normalized_shape`` or ``num_attention_heads``."""
    out = {}
    for key, value in vars(module).items():
        if key == "training":
            continue
        if isinstance(value, _PLAIN) or (
            isinstance(value, (tuple, list)) and all(isinstance(v, _PLAIN) for v in value)
        ):
            out[key] = value if not isinstance(value, list) else tuple(value)
    return out


def snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A deep record of ``model`` and ``optimizer`` to compare with :func:`differences`."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "parameters": {n: (id(p), tuple(p.shape)) for n, p in model.named_parameters()},
        "modules": {n: (type(m).__name__, _plain_attributes(m)) for n, m in model.named_modules()},
        "optimizer_params": [[id(p) for p in group["params"]] for group in optimizer.param_groups],
        "optimizer_state": {
            id(p): {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in state.items()}
            for p, state in optimizer.state.items()
        },
    }


def differences(before: dict[str, Any], after: dict[str, Any], limit: int = 5) -> list[str]:
    """What differs between two snapshots (empty: identical), at most ``limit`` items per kind."""
    found: list[str] = []
    found += _dict_changes("state_dict", before["state"], after["state"], _same_tensor, limit)
    found += _dict_changes("parameter", before["parameters"], after["parameters"], lambda a, b: a == b, limit)
    found += _dict_changes("module", before["modules"], after["modules"], lambda a, b: a == b, limit)
    if before["optimizer_params"] != after["optimizer_params"]:
        found.append("optimizer param_groups point at other tensors")
    found += _dict_changes(
        "optimizer state",
        before["optimizer_state"],
        after["optimizer_state"],
        lambda a, b: a.keys() == b.keys() and all(_same_tensor(a[k], b[k]) for k in a),
        limit,
    )
    return found


def _same_tensor(a: Any, b: Any) -> bool:
    if torch.is_tensor(a) and torch.is_tensor(b):
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def _dict_changes(kind: str, a: dict, b: dict, same, limit: int) -> list[str]:
    changes = [f"{kind} {k!s} removed" for k in a if k not in b]
    changes += [f"{kind} {k!s} added" for k in b if k not in a]
    changes += [f"{kind} {k!s} changed" for k in a if k in b and not same(a[k], b[k])]
    return changes[:limit] + ([f"... and {len(changes) - limit} more {kind} changes"] if len(changes) > limit else [])
