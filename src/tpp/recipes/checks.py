"""Small validators of recipe values: each raises a one-line ConfigError naming where the value is."""

from __future__ import annotations

import math
from typing import Any, Mapping

from tpp.errors import ConfigError


def keys(data: Any, allowed: set[str], where: str) -> None:
    """Require a mapping whose keys are all in ``allowed``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, not {type(data).__name__}")
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys: {', '.join(sorted(allowed))}")


def text(value: Any, where: str, empty: bool = False) -> str:
    """A string (non-empty unless ``empty``)."""
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise ConfigError(f"{where} must be a non-empty string, got {value!r}")
    return value


def opt_text(value: Any, where: str) -> str | None:
    """None or a non-empty string."""
    return None if value is None else text(value, where)


def whole(value: Any, where: str, low: int) -> int:
    """An int >= ``low`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{where} must be a whole number >= {low}, got {value!r}")
    return value


def number(value: Any, where: str, low: float = 0.0) -> float:
    """A finite float >= ``low``; numeric strings such as YAML's ``1e-4`` are accepted."""
    try:
        result = float(value)  # YAML reads 1e-4 (no dot) as a string
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(result) or result < low:
        raise ConfigError(f"{where} must be a finite number >= {low}, got {value!r}")
    return result


def schedule(value: Any, where: str) -> str:
    """An LR schedule text that :func:`tpp.training.parse_lr_schedule` accepts."""
    from tpp.training import parse_lr_schedule

    result = text(str(value) if isinstance(value, (int, float)) else value, where)
    parse_lr_schedule(result)  # ConfigError on a malformed schedule
    return result


def non_empty_list(value: Any, where: str) -> list:
    """A non-empty list."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list, got {value!r}")
    return value


def aligned(value: Any, n: int, where: str) -> list[float | None]:
    """A list of ``n`` numbers or nulls (one per prune.ratios entry)."""
    if not isinstance(value, list) or len(value) != n:
        raise ConfigError(f"{where} must be a list of {n} numbers (one per prune.ratios entry; null = unknown)")
    return [None if v is None else number(v, where) for v in value]
