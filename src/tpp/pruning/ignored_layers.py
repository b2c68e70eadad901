"""The layers a unit search never prunes: those the user names, and the network's output layers."""

from __future__ import annotations

import fnmatch
from typing import Iterable

import torch.nn as nn
from torch_pruning import ops

from tpp.errors import ConfigError
from tpp.pruning.layers import is_weight_layer


def resolve_ignored(model: nn.Module, ignored: Iterable[nn.Module | str] | None) -> set[nn.Module]:
    """The modules named or given in ``ignored`` (module names or fnmatch patterns), with all their submodules."""
    result: set[nn.Module] = set()
    named = dict(model.named_modules())
    for item in ignored or ():
        if isinstance(item, str):
            matches = [m for n, m in named.items() if n == item or fnmatch.fnmatchcase(n, item)]
            if not matches:
                raise ConfigError(f"ignored layer {item!r} is not a module of the model; use a module name or pattern")
            for module in matches:
                result.update(module.modules())
        else:
            result.update(item.modules())
    return result


def output_layers(graph) -> set[nn.Module]:
    """Layers whose channels are the network's outputs (classifiers): never pruned.

    Torch-Pruning adds an output node only when the output comes from a functional op, so start
    from the graph's sinks and walk back through ops that keep the channel count.
    """
    layers: set[nn.Module] = set()
    stack = [n for n in graph.module2node.values() if not n.outputs]
    seen = set(stack)
    while stack:
        node = stack.pop()
        if is_weight_layer(node.module):
            layers.add(node.module)
            continue
        if isinstance(node.module, (ops._ReshapeOp, ops._ConcatOp, ops._SplitOp)):
            continue
        for parent in node.inputs:  # element-wise ops, norms and the output op keep the channel count
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return layers
