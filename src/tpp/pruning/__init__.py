"""Structured pruning: TPP, its baselines, channel-dependency units and physical removal.

A pruner is a :class:`BasePruner` composed of an importance, regularisers and a schedule; the
built-in methods are in :mod:`tpp.pruning.methods` and are selected by name through the registry.
"""

from tpp.pruning.base import BasePruner
from tpp.pruning.configured import ConfiguredPruner
from tpp.pruning.graph import register_layer
from tpp.pruning.methods.greg import GReg1Pruner
from tpp.pruning.methods.l1 import L1Pruner
from tpp.pruning.methods.orth_then_l1 import KernOrthThenL1Pruner, OrthConvThenL1Pruner, OrthRegThenL1Pruner
from tpp.pruning.methods.tpp import TPPPruner
from tpp.pruning.methods.tpp_adaptive import TPPAdaptivePruner
from tpp.pruning.registry import Method, get_method, list_methods, pruning_method, register_method
from tpp.pruning.selection import parse_ratio

__all__ = [
    "BasePruner",
    "ConfiguredPruner",
    "GReg1Pruner",
    "KernOrthThenL1Pruner",
    "L1Pruner",
    "Method",
    "OrthConvThenL1Pruner",
    "OrthRegThenL1Pruner",
    "TPPAdaptivePruner",
    "TPPPruner",
    "get_method",
    "list_methods",
    "parse_ratio",
    "pruning_method",
    "register_layer",
    "register_method",
]
