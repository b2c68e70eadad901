"""tpp: Trainability Preserving Pruning (Wang & Fu, ICLR 2023) for PyTorch.

Quick use inside your own training loop::

    import tpp
    pruner = tpp.TPPPruner(model, example_inputs, ratio=0.5)   # schedule="fast": 10x shorter
    while not pruner.done:                  # 110,000 iterations at the paper's defaults: many epochs
        for x, y in batches:
            loss = criterion(model(x), y) + pruner.penalty()
            optimizer.zero_grad(); loss.backward()
            pruner.regularize()
            optimizer.step()
            pruner.step()
            if pruner.done:
                break
    model = pruner.prune()

Public names are imported lazily so that ``import tpp`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from tpp._version import __version__

# public name -> module that defines it
_EXPORTS = {
    "TPPPruner": "tpp.pruning.methods.tpp",
    "count": "tpp.metrics.counting",
    "save_pruned": "tpp.checkpoints",
    "load_pruned": "tpp.checkpoints",
    "save_pretrained": "tpp.deploy.hf",
    "create_model": "tpp.models",
    "list_models": "tpp.models",
    "jacobian_singular_values": "tpp.metrics.jacobian",
    "TPPError": "tpp.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


_SUBPACKAGES = {"data", "models", "training", "pruning", "metrics", "checkpoints", "jobs", "deploy", "cli"}


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"tpp.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tpp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
