"""Physical channel removal on the DependencyGraph, checked to preserve the network's function."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
import torch_pruning as tp

from tpp.errors import PruningError
from tpp.pruning.units import PruningUnit

# Relative tolerance of the function-preservation check (float32 reassociation noise is ~1e-6).
CHECK_TOLERANCE = 1e-4


def remove_channels(
    model: nn.Module,
    graph: tp.DependencyGraph,
    units: Sequence[PruningUnit],
    pruned_roots: dict[str, torch.Tensor],
    example_inputs: Any,
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Remove ``pruned_roots`` of every unit from ``model`` in place.

    The caller has zeroed those channels, so removal must not change the outputs; this is checked in
    eval mode on ``example_inputs`` and a mismatch raises :class:`PruningError`.
    """
    names_before = {id(p): n for n, p in model.named_parameters()}
    reference = _eval_outputs(model, example_inputs)
    for unit in units:
        roots = pruned_roots[unit.name].tolist()
        handler = graph.get_pruner_of_module(unit.root).prune_out_channels
        group = graph.get_pruning_group(unit.root, handler, roots)
        if not graph.check_pruning_group(group):
            raise PruningError(f"removing {len(roots)} channels of {unit.name} would empty a layer; use a smaller ratio")
        group.prune()
    after = _eval_outputs(model, example_inputs)
    _check_same(reference, after)
    if optimizer is not None:
        repoint_optimizer(optimizer, model, names_before)


def _eval_outputs(model: nn.Module, example_inputs: Any) -> list[torch.Tensor]:
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            out = model(*example_inputs) if isinstance(example_inputs, (tuple, list)) else model(example_inputs)
    finally:
        for m, mode in modes.items():
            m.train(mode)
    return [t.detach().clone() for t in tp.utils.flatten_as_list(out)]


def _check_same(reference: list[torch.Tensor], after: list[torch.Tensor]) -> None:
    for ref, new in zip(reference, after):
        if ref.shape != new.shape:
            raise PruningError(f"pruning changed an output shape {tuple(ref.shape)} -> {tuple(new.shape)}; "
                               "exclude the layer that produces it with ignored_layers")
        scale = ref.abs().max().clamp_min(1.0)
        error = float((ref - new).abs().max() / scale)
        if error > CHECK_TOLERANCE:
            raise PruningError(
                f"channel removal changed the outputs (max relative error {error:.2e}): the model has a "
                "structure tpp cannot prune exactly; pass the layers involved in ignored_layers or use scope='internal'")


def repoint_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module, names_before: dict[int, str]) -> None:
    """Point ``optimizer`` at the model's current parameters, keeping state only for unchanged tensors.

    Torch-Pruning replaces every pruned tensor by a new ``nn.Parameter``; an optimizer that still
    holds the old ones would silently train nothing (anchors §1.2).
    """
    current = dict(model.named_parameters())
    for group in optimizer.param_groups:
        new_params = []
        for p in group["params"]:
            name = names_before.get(id(p))
            replacement = current.get(name, p) if name is not None else p
            if replacement is not p:
                optimizer.state.pop(p, None)
            new_params.append(replacement)
        group["params"] = new_params
