"""The channel-dependency graph: Torch-Pruning's DependencyGraph, built safely and searched with bounds.

* :func:`build_graph` traces the model (a tensor, tuple or dict of inputs), records the shapes of
  every reshape (so that heads split out of channels can be recognised), restores train/eval modes
  (Torch-Pruning leaves the model in eval mode) and turns tracing failures into one-line errors.
* Layers that move channels without weights of their own, which Torch-Pruning cannot trace, take
  part through a small protocol (:class:`ChannelLayer`), or through a Torch-Pruning pruner given to
  :func:`register_layer`.
* :func:`all_groups` enumerates the groups like ``DependencyGraph.get_all_groups`` but bounds each
  search (some architectures make Torch-Pruning's search run for hours).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any, Protocol, Sequence, runtime_checkable

import torch
import torch.nn as nn
import torch_pruning as tp
from torch.overrides import TorchFunctionMode
from torch_pruning.dependency import group as tp_group
from torch_pruning.pruner.function import BasePruningFunc

from tpp.errors import PruningError
from tpp.pruning.layers import builtin_pruners, weight_layer_types
from tpp.pruning.tp_compat import apply_guards
from tpp.util.inputs import call_without_cache, output_tensors

apply_guards()


@runtime_checkable
class ChannelLayer(Protocol):
    """A layer that routes channels with no weights of its own (e.g. an option-A zero-padding shortcut).

    ``tpp_channels(out)`` is its number of output (``out=True``) or input channels;
    ``tpp_remove_channels(indices, out)`` removes those output or input channels. A layer may also
    define ``tpp_fixed_channels(local) -> BoolTensor``: which of the given output channels carry a copy
    of another layer's output and so can never be zeroed by regularising a filter."""

    def tpp_channels(self, out: bool) -> int: ...

    def tpp_remove_channels(self, indices: Sequence[int], out: bool) -> None: ...


class _ChannelLayerPruner(BasePruningFunc):
    """Torch-Pruning's side of :class:`ChannelLayer`."""

    def prune_out_channels(self, layer, idxs):
        layer.tpp_remove_channels(list(idxs), out=True)
        return layer

    def prune_in_channels(self, layer, idxs):
        layer.tpp_remove_channels(list(idxs), out=False)
        return layer

    def get_out_channels(self, layer):
        return layer.tpp_channels(out=True)

    def get_in_channels(self, layer):
        return layer.tpp_channels(out=False)


_REGISTERED: dict[type, BasePruningFunc] = {}


def register_layer(layer_type: type, pruner: BasePruningFunc) -> None:
    """Prune instances of ``layer_type`` with a Torch-Pruning pruner (a ``BasePruningFunc``), in every
    graph tpp builds from now on. Layers following :class:`ChannelLayer` need no registration."""
    if not isinstance(pruner, BasePruningFunc):
        raise TypeError(f"expected a torch_pruning BasePruningFunc instance, got {type(pruner).__name__}")
    _REGISTERED[layer_type] = pruner


def _custom_pruners(model: nn.Module) -> dict[type, BasePruningFunc]:
    pruners = {**builtin_pruners(), **_REGISTERED}
    for module in model.modules():
        if isinstance(module, ChannelLayer) and type(module) not in pruners:
            pruners[type(module)] = _ChannelLayerPruner()
    return pruners


class _ReshapeRecorder(TorchFunctionMode):
    """Records the input and output shape of every reshape of the traced forward pass, keyed by the
    output's autograd node: Torch-Pruning keeps only the node, and whether a reshape splits the
    channels (into attention heads) depends on the shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: dict[Any, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in _RESHAPES and torch.is_tensor(out) and out.grad_fn is not None and args and torch.is_tensor(args[0]):
            self.shapes[out.grad_fn] = (tuple(args[0].shape), tuple(out.shape))
        return out


_RESHAPES = {torch.Tensor.view, torch.Tensor.reshape, torch.reshape, torch.Tensor.unflatten, torch.unflatten}


def build_graph(model: nn.Module, example_inputs) -> tp.DependencyGraph:
    """Build Torch-Pruning's DependencyGraph without leaving the model in eval mode (a TP pitfall).

    ``example_inputs`` is a tensor, a tuple (positional arguments) or a dict (keyword arguments).

    Raises:
        PruningError: the model does not run on ``example_inputs``.
    """
    was_training = {m: m.training for m in model.modules()}
    recorder = _ReshapeRecorder()
    layer_inputs: dict[nn.Module, Any] = {}
    hooks = [
        m.register_forward_pre_hook(_input_recorder(layer_inputs))
        for m in model.modules()
        if isinstance(m, weight_layer_types())
    ]
    try:
        with torch.enable_grad(), recorder:
            graph = tp.DependencyGraph().build_dependency(
                model,
                example_inputs=dict(example_inputs) if isinstance(example_inputs, Mapping) else example_inputs,
                # tpp's own call (Torch-Pruning would try model(*tensor) first, which unpacks the batch into
                # positional arguments), without a key/value cache, following only the output's tensors
                forward_fn=call_without_cache,
                output_transform=output_tensors,
                customized_pruners=_custom_pruners(model),
                verbose=False,
            )
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError) as error:
        text = " ".join(str(error).split())[:200]
        raise PruningError(
            f"tracing the model on example_inputs failed ({type(error).__name__}: {text}); "
            "check that model(example_inputs) runs (a dict is passed as keyword arguments, "
            "a tuple as positional ones)"
        ) from None
    finally:
        for hook in hooks:
            hook.remove()
        for module, mode in was_training.items():
            module.train(mode)
    graph.tpp_reshape_shapes = recorder.shapes
    graph.tpp_layer_inputs = layer_inputs
    return graph


def _input_recorder(store: dict):
    """A pre-hook that notes what a layer reads (its input's autograd node, or the leaf tensor's id):
    layers that read the same tensor get the same key (a gated MLP's gate and up projections)."""

    def hook(module, args, kwargs=None):
        if args and torch.is_tensor(args[0]):
            x = args[0]
            store.setdefault(module, x.grad_fn if x.grad_fn is not None else ("leaf", id(x)))

    return hook


def splits_channels(graph, op, channels: int) -> bool:
    """Whether reshape ``op`` cuts a dimension of ``channels`` into several (attention heads, chunks).

    Flattening merges channels with other dimensions and keeps each channel a contiguous block, which
    Torch-Pruning maps exactly; a split such as ``[B, N, C] -> [B, N, heads, C / heads]`` does not."""
    node = graph.module2node.get(op)
    shapes = getattr(graph, "tpp_reshape_shapes", {}).get(getattr(node, "grad_fn", None))
    if shapes is None:
        return False
    before, after = shapes
    return len(after) > len(before) and channels in before and channels not in after


# Torch-Pruning revisits a node whenever it reaches it with a different index list, so partial-channel
# slicing around residual chains (ReXNet's x[:, :C] += shortcut) makes the search run for hours.
# Legitimate groups add a few dependencies per graph node (at most ~0.5 per node seen on timm's zoo).
DEPENDENCIES_PER_NODE = 8
MIN_DEPENDENCIES = 1000
# Upper bound on the whole search, whatever the model: past it, building the pruner fails.
SEARCH_SECONDS = 300.0


class _SearchExploded(Exception):
    pass


@contextlib.contextmanager
def _bounded_search(graph: tp.DependencyGraph):
    """Count the dependencies Torch-Pruning adds to the group being built and stop runaway searches.

    Torch-Pruning offers no hook to bound ``get_pruning_group``, so ``Group.add_dep`` is wrapped for the
    duration (and restored): past the bound the group is abandoned; past :data:`SEARCH_SECONDS` in
    all, a :class:`PruningError` says what to do."""
    limit = max(MIN_DEPENDENCIES, DEPENDENCIES_PER_NODE * len(graph.module2node))
    deadline = time.monotonic() + SEARCH_SECONDS
    original = tp_group.Group.add_dep
    state = {"count": 0}

    def add_dep(group, dep, idxs):
        state["count"] += 1
        if state["count"] > limit:
            raise _SearchExploded
        if state["count"] % 64 == 0 and time.monotonic() > deadline:
            raise PruningError(
                f"finding the coupled channels took more than {SEARCH_SECONDS:.0f} s; pass the "
                "blocks with unusual channel slicing in ignored_layers"
            )
        return original(group, dep, idxs)

    tp_group.Group.add_dep = add_dep
    try:
        yield state
    finally:
        tp_group.Group.add_dep = original


def all_groups(graph: tp.DependencyGraph, ignored: list[nn.Module], skip=lambda module: False):
    """``(root, group)`` for every Conv/Linear root, as ``DependencyGraph.get_all_groups`` enumerates them,
    with ``group=None`` for roots whose dependency search had to be stopped, or was not run because
    ``skip(root)`` said that the root's channels cannot be a unit anyway (attention projections, whose
    search runs away through RoPE's slicing of every head in every layer)."""
    visited: set[nn.Module] = set()
    ignored = ignored + list(graph.IGNORED_LAYERS_IN_TRACING)
    ignored_set = set(ignored)
    layer_types = weight_layer_types()
    with _bounded_search(graph) as search:
        for module in list(graph.module2node):
            if module in ignored_set or not isinstance(module, layer_types) or module in visited:
                continue
            pruner = graph.get_pruner_of_module(module)
            if pruner is None or pruner.get_out_channels(module) is None:
                continue
            if skip(module):
                yield module, None
                continue
            search["count"] = 0
            try:
                group = graph.get_pruning_group(
                    module, pruner.prune_out_channels, list(range(pruner.get_out_channels(module)))
                )
            except _SearchExploded:
                visited.add(module)
                yield module, None
                continue
            prunable = True
            for dep, _ in group:
                if graph.is_out_channel_pruning_fn(dep.handler):
                    visited.add(dep.target.module)
                    prunable = prunable and dep.target.module not in ignored_set
            if prunable:
                yield module, group
