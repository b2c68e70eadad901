"""Metrics: parameter/FLOP counting (and, from other modules, trainability diagnostics).

Names are imported lazily so that importing one metric does not pay for the others.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> defining module; add new metric modules here
_EXPORTS = {
    "Counts": "tpp.metrics.counting",
    "count": "tpp.metrics.counting",
    "layer_table": "tpp.metrics.counting",
    "JSVResult": "tpp.metrics.jacobian",
    "jacobian_singular_values": "tpp.metrics.jacobian",
    "language_model_jsv": "tpp.metrics.language",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tpp.metrics' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
