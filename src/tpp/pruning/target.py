"""Find the pruning ratio that reaches a FLOPs speedup (or a FLOPs budget), by counting only.

The search bisects one number: the uniform per-layer ratio, or the ``{ratio}`` placeholder of a
pattern string such as ``"*layer*.conv1:{ratio}"``. Each probe L1-prunes a deep copy of the model
(no data, no training) and counts FLOPs with :func:`tpp.count` (conv + linear MACs x 2, as the
paper). The speedup is a step function of the ratio (``ceil`` of channel counts), so the result
is the probe closest to the target once it is within ``tolerance``.

>>> ratio, speedup = find_ratio_for_speedup(model, inputs, 2.0, pattern="*layer*.conv1:{ratio}")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

from torch import nn

from tpp.errors import ConfigError

# Ratios must stay below 1 (at least one channel is always kept); this is the search's upper end.
MAX_RATIO = 0.999
DIGITS = 4  # probes are rounded so the returned ratio is short and reproduces the reported speedup


def _ratio_spec(ratio: float, pattern: str | None) -> Any:
    return ratio if pattern is None else pattern.replace("{ratio}", f"{ratio:g}")


def _speedup(
    model: nn.Module,
    inputs: Any,
    base_flops: int,
    ratio: float,
    scope: str,
    pattern: str | None,
    ignored_layers: Iterable[nn.Module | str] | None,
) -> float:
    from tpp.metrics.counting import count
    from tpp.pruning.methods.l1 import L1Pruner

    if ratio <= 0:
        return 1.0
    pruned = L1Pruner(
        copy.deepcopy(model), inputs, ratio=_ratio_spec(ratio, pattern), scope=scope, ignored_layers=ignored_layers
    ).prune()
    flops = count(pruned, inputs).flops
    return base_flops / flops if flops else float("inf")


def find_ratio_for_speedup(
    model: nn.Module,
    example_inputs: Any,
    speedup: float,
    *,
    scope: str = "internal",
    pattern: str | None = None,
    tolerance: float = 0.02,
    ignored_layers: Iterable[nn.Module | str] | None = None,
    max_probes: int = 30,
) -> tuple[float, float]:
    """Return ``(ratio, achieved_speedup)`` with ``|achieved / speedup - 1| <= tolerance``.

    ``model`` is not modified. With ``pattern``, the ratio replaces ``{ratio}`` in it (the usual
    ``'*layer*.conv1:{ratio}'`` of the paper); without, it is the uniform ratio of every prunable layer.

    Raises:
        ConfigError: a target below 1x, a pattern without ``{ratio}``, a target above the largest
            achievable speedup (the message states it), or no ratio within the tolerance.
    """
    from tpp.metrics.counting import count

    if not speedup >= 1.0:
        raise ConfigError(f"target speedup {speedup} is below 1x; pass a FLOPs speedup >= 1 (e.g. 2.0)")
    if pattern is not None and "{ratio}" not in pattern:
        raise ConfigError(f"pattern {pattern!r} has no '{{ratio}}' placeholder; write e.g. '*layer*.conv1:{{ratio}}'")
    if not 0 < tolerance < 1:
        raise ConfigError(f"tolerance must be in (0, 1), got {tolerance}")
    base = count(model, example_inputs).flops

    def probe(r: float) -> float:
        return _speedup(model, example_inputs, base, r, scope, pattern, ignored_layers)

    def close(s: float) -> bool:
        return abs(s / speedup - 1.0) <= tolerance

    if close(1.0):
        return 0.0, 1.0
    top = probe(MAX_RATIO)
    if top < speedup * (1 - tolerance):
        what = f"pattern {pattern!r}" if pattern else f"scope={scope!r}"
        raise ConfigError(
            f"a {speedup:g}x FLOPs speedup is unreachable with {what}: at most {top:.2f}x "
            "(ratio 0.999); ask for less or prune more layers (another pattern, or scope='all')"
        )
    low, high = 0.0, MAX_RATIO
    best = (MAX_RATIO, top)
    for _ in range(max_probes):
        mid = round((low + high) / 2, DIGITS)
        if mid in (low, high):
            break
        achieved = probe(mid)
        if abs(achieved - speedup) < abs(best[1] - speedup):
            best = (mid, achieved)
        if close(achieved):
            return mid, achieved
        low, high = (mid, high) if achieved < speedup else (low, mid)
    if close(best[1]):
        return best
    raise ConfigError(
        f"no ratio gives {speedup:g}x within {tolerance:.0%} (closest: ratio {best[0]:g} -> "
        f"{best[1]:.2f}x; the model has too few channels for finer steps); ask for {best[1]:.2f}x, or give the "
        "ratio itself"
    )


def find_ratio_for_flops(
    model: nn.Module, example_inputs: Any, target_flops: float, **options: Any
) -> tuple[float, float]:
    """Like :func:`find_ratio_for_speedup` for a FLOPs budget per image (e.g. ``1e9`` for 1 GFLOPs).

    Returns ``(ratio, achieved_flops)``.
    """
    from tpp.metrics.counting import count

    if not target_flops > 0:
        raise ConfigError(f"target FLOPs must be > 0, got {target_flops}")
    base = count(model, example_inputs).flops
    ratio, speedup = find_ratio_for_speedup(model, example_inputs, base / target_flops, **options)
    return ratio, base / speedup
