"""The layers whose output channels (filters) the pruner removes, and which dimension holds them.

``nn.Conv1d``, ``nn.Conv2d`` and ``nn.Linear`` store their filters along dimension 0. ``transformers``'
``Conv1D`` (GPT-2 and its relatives; ``transformers.pytorch_utils.Conv1D``) is a linear layer whose
weight is stored transposed, ``[in, out]``
(https://huggingface.co/docs/transformers/main/en/internal/modeling_utils#transformers.Conv1D): its
filters are the *columns*. It takes part through a Torch-Pruning pruner (:class:`TransposedLinearPruner`),
registered like any other (:func:`tpp.pruning.graph.register_layer`), and every consumer of filters
(scores, gram penalty, growing L2, zero-out) reads them along :func:`filter_dim`.

The class is found in ``sys.modules`` only: a model that holds a ``Conv1D`` has imported
``transformers`` already, and the core never imports it.
"""

from __future__ import annotations

import sys
from typing import Sequence

import torch
import torch.nn as nn
from torch_pruning.pruner.function import BasePruningFunc

_BASE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)


def transposed_linear_types() -> tuple[type, ...]:
    """``transformers``' ``Conv1D`` class if ``transformers`` is loaded (else nothing)."""
    module = sys.modules.get("transformers.pytorch_utils")
    cls = getattr(module, "Conv1D", None) if module is not None else None
    return (cls,) if isinstance(cls, type) and issubclass(cls, nn.Module) else ()


def weight_layer_types() -> tuple[type, ...]:
    """Layer types whose output channels can root a unit: Conv1d/Conv2d/Linear and ``Conv1D``."""
    return _BASE_TYPES + transposed_linear_types()


def is_weight_layer(module: object) -> bool:
    """Whether ``module`` is a layer of :func:`weight_layer_types`."""
    return isinstance(module, weight_layer_types())


def filter_dim(module: object) -> int:
    """The dimension of ``module.weight`` that holds its output channels (1 for ``Conv1D``, else 0)."""
    types = transposed_linear_types()
    return 1 if types and isinstance(module, types) else 0


def filters(module: nn.Module) -> torch.Tensor:
    """``module.weight`` seen as ``[out, ...]`` (a transposed view for ``Conv1D``; gradients flow through)."""
    weight = module.weight
    return weight.movedim(filter_dim(module), 0) if filter_dim(module) else weight


class TransposedLinearPruner(BasePruningFunc):
    """Torch-Pruning's pruner for ``Conv1D``: a linear layer whose weight is ``[in, out]``."""

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        keep = sorted(set(range(layer.weight.shape[1])) - set(int(i) for i in idxs))
        layer.weight = self._prune_parameter_and_grad(layer.weight, keep, 1)
        if getattr(layer, "bias", None) is not None:
            layer.bias = self._prune_parameter_and_grad(layer.bias, keep, 0)
        if hasattr(layer, "nf"):  # Conv1D reshapes its output with nf
            layer.nf = len(keep)
        return layer

    def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        keep = sorted(set(range(layer.weight.shape[0])) - set(int(i) for i in idxs))
        layer.weight = self._prune_parameter_and_grad(layer.weight, keep, 0)
        if hasattr(layer, "nx"):
            layer.nx = len(keep)
        return layer

    def get_out_channels(self, layer: nn.Module) -> int:
        return int(layer.weight.shape[1])

    def get_in_channels(self, layer: nn.Module) -> int:
        return int(layer.weight.shape[0])


# one instance for every graph: Torch-Pruning tells in- from out-channel handlers by the bound method,
# so groups found on one graph can be read with another
_TRANSPOSED_LINEAR = TransposedLinearPruner()


def builtin_pruners() -> dict[type, BasePruningFunc]:
    """The pruners tpp adds for known layer types that Torch-Pruning lacks (``Conv1D`` when loaded)."""
    return {cls: _TRANSPOSED_LINEAR for cls in transposed_linear_types()}
