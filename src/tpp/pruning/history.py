"""A pruned model's channel plan: what was removed, as plain data that rebuilds its shapes.

The plan (``model.tpp_plan``) is Torch-Pruning's pruning history (``[layer name, out-channel?,
indices]`` per group, plain lists) and the form, shapes and dtypes of the example inputs the graph was
traced with. :func:`replay_plan` shrinks a freshly built, unpruned model to the same shapes, so that a
saved state_dict loads into it: the architecture is stored as data, never as a pickled module.
"""

from __future__ import annotations

import os
from typing import Any

import torch.nn as nn

from tpp.errors import CheckpointError, PruningError
from tpp.pruning.graph import build_graph
from tpp.pruning.heads import HISTORY_PREFIX, replay_heads
from tpp.pruning.ties import find_ties, retie
from tpp.util.inputs import input_signature, inputs_from_signature
from tpp.util.modules import device_of


def record_plan(model: nn.Module, history: list, example_inputs: Any) -> None:
    """Append a pruning history to the plan carried by ``model`` (attribute ``tpp_plan``).

    A new plan object replaces the old one, never edited in place, so that restoring the model's
    attributes (an interrupted :meth:`BasePruner.prune`) brings back the old plan."""
    old = getattr(model, "tpp_plan", None) or {"history": [], "inputs": input_signature(example_inputs)}
    plan = {**old, "history": list(old["history"])}
    for name, is_out, idxs in history:
        plan["history"].append([str(name), bool(is_out), [int(i) for i in idxs]])
    model.tpp_plan = plan


def replay_plan(module: nn.Module, plan: dict | None, source: str | os.PathLike) -> None:
    """Shrink an unpruned ``module`` to the shapes recorded in ``plan`` (Torch-Pruning history)."""
    if not plan or not plan.get("history"):
        return
    # files written before dict/tuple inputs were recorded have "input_shapes"
    signature = plan["inputs"] if "inputs" in plan else plan["input_shapes"]
    ties = find_ties(module)
    try:  # a plan traced on other inputs fails in the trace itself
        graph = build_graph(module, inputs_from_signature(signature, device_of(module)))
        heads = [e for e in plan["history"] if str(e[0]).startswith(HISTORY_PREFIX)]
        graph.load_pruning_history([[n, o, list(i)] for n, o, i in plan["history"] if [n, o, i] not in heads])
        replay_heads(module, heads)  # whole attention heads, cut by tpp (tpp.pruning.heads)
        retie(ties, strict=False)  # the pruned model kept its ties (BasePruner.prune): so does its rebuilt copy
    except (AttributeError, IndexError, KeyError, TypeError, ValueError, RuntimeError, PruningError) as error:
        raise CheckpointError(
            f"{source} was pruned from a different architecture ({type(error).__name__}); pass the matching model"
        ) from None
    module.tpp_plan = plan
