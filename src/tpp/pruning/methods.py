"""Registry of pruning methods, so that the CLI and recipes select them by name.

A method is a recipe of up to four hooks around the common pipeline
(pretrained model -> [regularise] -> remove -> fine-tune):

* ``make_pruner(model, example_inputs, **options)``: an object with the pruner life cycle
  (``penalty``, ``regularize``, ``step``, ``done``, ``prune``);
* ``after_prune(model)``: e.g. OrthP re-initialisation or Scratch's random init;
* ``finetune_penalty(model)``: an extra loss during fine-tuning (e.g. L1 + KernOrth);
* ``regularized``: whether the method has a training phase before removal.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

from tpp.errors import ConfigError


@dataclass(frozen=True)
class Method:
    """How one pruning method plugs into the common pipeline."""

    name: str
    make_pruner: Callable[..., Any]
    regularized: bool
    description: str
    after_prune: Callable[[nn.Module], None] | None = None
    finetune_penalty: Callable[[nn.Module], Callable[[], torch.Tensor]] | None = None


_METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add a method to the registry (names are unique)."""
    if method.name in _METHODS:
        raise ValueError(f"pruning method {method.name!r} is already registered")
    _METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The registered method called ``name`` (ConfigError listing the valid names otherwise)."""
    _load_builtin()
    if name not in _METHODS:
        raise ConfigError(f"unknown pruning method {name!r}; choose from {', '.join(list_methods())}")
    return _METHODS[name]


def list_methods() -> list[str]:
    """Names of all registered methods."""
    _load_builtin()
    return sorted(_METHODS)


def _load_builtin() -> None:
    if "tpp" in _METHODS:
        return
    from tpp.pruning.l1 import L1Pruner
    from tpp.pruning.tpp_pruner import TPPPruner

    register_method(Method("tpp", TPPPruner, True, "Trainability Preserving Pruning (Wang & Fu, 2023)"))
    register_method(Method("l1", L1Pruner, False, "one-shot L1-norm filter pruning (Li et al., 2017)"))
    if importlib.util.find_spec("tpp.pruning.baselines") is not None:  # the paper's other baselines
        importlib.import_module("tpp.pruning.baselines")  # registers itself
