"""Keep a model's configuration true to its pruned shapes (``config.intermediate_size`` and the like).

Models of ``transformers`` are rebuilt from their ``config`` (``from_pretrained``), so a config that
still says the old MLP width describes a model that no longer exists. After a removal,
:func:`sync_configs` updates the known width fields of every ``config`` object found on the model's
modules (the top model and its sub-models share one) from the layers' new shapes. A field is
changed only where it named the old width of the pruned units and every one of them now has the same
width (a config holds one number for all layers); otherwise it is left alone and reported.

Nothing here imports ``transformers``: a config is any object with these attributes.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from tpp.pruning.heads import sync_head_configs
from tpp.pruning.layers import filter_dim, is_weight_layer
from tpp.pruning.removal import remove_channels
from tpp.pruning.units import PruningUnit
from tpp.util.modules import warn_caller

# The MLP width under the names the families give it (Llama/Mistral/Qwen/Gemma/Phi-3/GPT-NeoX/BERT:
# intermediate_size; GPT-2: n_inner; OPT: ffn_dim; Falcon: ffn_hidden_size; T5: d_ff).
MLP_WIDTH_FIELDS = ("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size", "d_ff")
# A field that may be None meaning "4 x the residual width" (GPT-2's n_inner): its residual field.
_IMPLIED_WIDTH = {"n_inner": "n_embd"}


def consumer_widths(graph: Any, units: Sequence[PruningUnit]) -> dict[str, set[int]]:
    """Per unit, the input widths of the layers that consume its channels (an MLP's down projection)."""
    widths: dict[str, set[int]] = {}
    for unit in units:
        found: set[int] = set()
        for item in unit.group or ():
            module = item.dep.target.module
            if (
                is_weight_layer(module)
                and graph.is_in_channel_pruning_fn(item.dep.handler)
                and not graph.is_out_channel_pruning_fn(item.dep.handler)
            ):
                found.add(int(module.weight.shape[1 - filter_dim(module)]))
        widths[unit.name] = found
    return widths


def configs_of(model: nn.Module) -> list[Any]:
    """Every distinct ``config`` object held by the model's modules."""
    seen: dict[int, Any] = {}
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and id(config) not in seen and hasattr(config, "__dict__"):
            seen[id(config)] = config
    return list(seen.values())


def sync_configs(model: nn.Module, before: dict[str, set[int]], after: dict[str, set[int]]) -> list[str]:
    """Update the MLP width fields of the model's configs from :func:`consumer_widths` of every unit
    that could be pruned, measured ``before`` and ``after`` the removal (a unit left unpruned keeps
    its old width, which then makes the widths differ). Returns one line per field left untrue."""
    problems: list[str] = []
    configs = configs_of(model)
    described: set[str] = set()
    for config in configs:
        for field in MLP_WIDTH_FIELDS:
            old = _width_of(config, field) if hasattr(config, field) else None
            mlp = [name for name, widths in before.items() if widths == {old}] if old is not None else []
            if not mlp:
                continue
            described.update(mlp)
            new = set().union(*(after[name] for name in mlp))
            if new == {old}:
                continue
            if len(new) == 1:
                setattr(config, field, next(iter(new)))
            else:
                problems.append(
                    f"config.{field} stays {old}: the MLP layers now have widths {sorted(new)}, "
                    "which one number cannot describe"
                )
    hidden = sorted(
        {w for name, widths in before.items() if name not in described and after[name] != widths for w in widths}
    )
    # e.g. BLOOM's MLP is 4 x hidden_size by construction, with no field of its own. Only said of text models
    # (a vocab_size): vision configs describe their stages by lists, which tpp does not claim to keep true.
    if hidden and any(hasattr(c, "vocab_size") for c in configs):
        problems.append(
            f"the config has no field for the pruned width{'s' if len(hidden) > 1 else ''} "
            f"{', '.join(map(str, hidden))}"
        )
    return problems


def keep_configs_true(model: nn.Module, before: dict[str, set[int]], after: dict[str, set[int]]) -> list[str]:
    """:func:`sync_configs` (MLP widths) and :func:`tpp.pruning.heads.sync_head_configs` (head counts)."""
    return sync_configs(model, before, after) + sync_head_configs(model, configs_of(model))


def _width_of(config: Any, field: str) -> int | None:
    value = getattr(config, field, None)
    if value is None and field in _IMPLIED_WIDTH and isinstance(getattr(config, _IMPLIED_WIDTH[field], None), int):
        return 4 * getattr(config, _IMPLIED_WIDTH[field])
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def remove_keeping_configs(
    module: nn.Module,
    graph: Any,
    units: Sequence[PruningUnit],
    pruned_roots: dict[str, torch.Tensor],
    candidates: Mapping[str, PruningUnit],
    example_inputs: Any,
    check_each: bool,
) -> None:
    """:func:`tpp.pruning.removal.remove_channels`, then :func:`keep_configs_true` from the widths of every
    unit that could be pruned (``candidates``), before and after; warns where a config stays untrue."""
    widths = consumer_widths(graph, list(candidates.values()))
    remove_channels(module, graph, units, pruned_roots, example_inputs, check_each=check_each)
    untrue = keep_configs_true(module, widths, consumer_widths(graph, list(candidates.values())))
    if untrue:  # the model itself is fine; only a rebuild from its config would not fit
        warn_caller("tpp: " + "; ".join(untrue) + "; a model rebuilt from this config would not fit the weights")
