"""Structured pruning: TPP, its baselines, channel-dependency units and physical removal."""

from tpp.pruning.selection import parse_ratio
from tpp.pruning.tpp_pruner import TPPPruner

__all__ = ["TPPPruner", "parse_ratio"]
