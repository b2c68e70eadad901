"""Structured pruning: TPP, its baselines, channel-dependency units and physical removal."""

from tpp.pruning.l1 import L1Pruner
from tpp.pruning.methods import get_method, list_methods, register_method
from tpp.pruning.selection import parse_ratio
from tpp.pruning.serialization import load_pruned, save_pruned
from tpp.pruning.tpp_pruner import TPPPruner

__all__ = ["L1Pruner", "TPPPruner", "get_method", "list_methods", "load_pruned", "parse_ratio", "register_method", "save_pruned"]
