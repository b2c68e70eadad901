"""Whole attention heads as pruning units, GQA-aware.

Torch-Pruning cannot follow a projection's channels into heads (the reshape to ``[B, T, heads,
head_dim]``, RoPE's half-rotations, grouped-query attention's repeat of the key/value heads), so tpp
cuts heads itself, for attention modules of the ``transformers`` Llama convention: four ``nn.Linear``
children ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj`` and an integer ``head_dim`` (Llama, Mistral,
Qwen2/Qwen3, Gemma, StableLM, ...). Other children may only be per-``head_dim`` layers (Qwen3's
``q_norm``/``k_norm``) or hold no parameters.

A head unit's channels are the module's key/value groups (https://arxiv.org/abs/2305.13245): group
``g`` is key and value head ``g`` with the ``heads / kv_heads`` query heads that read it (query
heads ``g * r ... g * r + r - 1``, as ``repeat_kv`` expands them). Removing a group takes its rows of
q/k/v (and their biases) and its columns of ``o_proj``; with multi-head attention a group is one head.
Once the group's q/k/v rows are zero its output is exactly zero (the value rows alone suffice), so
the removal is exact, checked like every other unit.

After a removal the module's head counts (``num_heads``, ``num_key_value_heads``, ... where it has
them) are updated, so that code reading them at forward time stays right; ``num_key_value_groups``
and ``head_dim`` do not change. :func:`sync_head_configs` keeps the config's counts true.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.nn as nn
import torch_pruning as tp

from tpp.errors import PruningError

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
# attributes of attention modules (and configs) that count query heads / key-value heads
QUERY_COUNTS = ("num_heads", "num_attention_heads")
KV_COUNTS = ("num_key_value_heads", "num_kv_heads")
# the history entries of head removals in a plan: ["heads:<module name>", True, [groups]]
HISTORY_PREFIX = "heads:"


@dataclass
class HeadLayout:
    """An attention module whose heads can be cut: its projections and head geometry."""

    name: str
    module: nn.Module
    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear
    head_dim: int

    @property
    def heads(self) -> int:
        return self.q.out_features // self.head_dim

    @property
    def kv_heads(self) -> int:
        return self.k.out_features // self.head_dim

    @property
    def group_size(self) -> int:
        return self.heads // self.kv_heads

    def query_rows(self, groups: torch.Tensor) -> torch.Tensor:
        """Rows of ``q_proj`` (and columns of ``o_proj``) of the given key/value groups."""
        width = self.group_size * self.head_dim
        return (groups[:, None] * width + torch.arange(width)).flatten()

    def kv_rows(self, groups: torch.Tensor) -> torch.Tensor:
        """Rows of ``k_proj`` and ``v_proj`` of the given key/value groups."""
        return (groups[:, None] * self.head_dim + torch.arange(self.head_dim)).flatten()


def layout_of(name: str, module: nn.Module) -> HeadLayout | None:
    """The head layout of ``module`` if it follows the Llama convention (module docstring), else None."""
    projections = [getattr(module, p, None) for p in PROJECTIONS]
    head_dim = getattr(module, "head_dim", None)
    if not all(type(p) is nn.Linear for p in projections) or not isinstance(head_dim, int) or head_dim <= 0:
        return None
    q, k, v, o = projections
    if (
        q.out_features % head_dim
        or k.out_features % head_dim
        or v.out_features != k.out_features
        or o.in_features != q.out_features
        or k.out_features == 0
        or (q.out_features // k.out_features) * k.out_features != q.out_features
    ):
        return None
    for child_name, child in module.named_children():
        if child_name in PROJECTIONS:
            continue
        if any(p.dim() != 1 or p.shape[0] != head_dim for p in child.parameters()):
            return None  # a per-head layer list, or anything else spanning the heads: not cut by tpp
    return HeadLayout(name, module, q, k, v, o, head_dim)


def find_layouts(model: nn.Module, ignored: Iterable[nn.Module] = ()) -> list[HeadLayout]:
    """Every attention module with cuttable heads, none of whose projections is ignored."""
    ignored = set(ignored)
    layouts = []
    for name, module in model.named_modules():
        layout = layout_of(name, module)
        if layout is not None and not any(p in ignored for p in (layout.q, layout.k, layout.v, layout.o)):
            layouts.append(layout)
    return layouts


def remove_heads(layout: HeadLayout, groups: torch.Tensor) -> None:
    """Remove key/value ``groups`` (with their query heads) from the attention module, in place."""
    groups = torch.as_tensor(groups, dtype=torch.long).flatten()
    old_heads, old_kv = layout.heads, layout.kv_heads
    if len(groups) == 0:
        return
    if len(groups) >= old_kv or int(groups.min()) < 0 or int(groups.max()) >= old_kv:
        raise PruningError(f"cannot remove key/value groups {groups.tolist()} of {layout.name}, which has {old_kv}")
    query, kv = layout.query_rows(groups).tolist(), layout.kv_rows(groups).tolist()
    tp.prune_linear_out_channels(layout.q, query)
    tp.prune_linear_out_channels(layout.k, kv)
    tp.prune_linear_out_channels(layout.v, kv)
    tp.prune_linear_in_channels(layout.o, query)
    for attrs, old, new in ((QUERY_COUNTS, old_heads, layout.heads), (KV_COUNTS, old_kv, layout.kv_heads)):
        for attr in attrs:
            if getattr(layout.module, attr, None) == old and not isinstance(getattr(layout.module, attr), bool):
                setattr(layout.module, attr, new)


def replay_heads(model: nn.Module, entries: list) -> None:
    """Redo the head removals of a plan's history (entries ``["heads:<name>", True, groups]``)."""
    modules = dict(model.named_modules())
    for name, _, groups in entries:
        layout = layout_of(name[len(HISTORY_PREFIX) :], modules.get(name[len(HISTORY_PREFIX) :], nn.Module()))
        if layout is None:
            raise PruningError(f"{name[len(HISTORY_PREFIX) :]} is not an attention module with cuttable heads")
        remove_heads(layout, torch.as_tensor(groups, dtype=torch.long))


def sync_head_configs(model: nn.Module, configs: list[Any]) -> list[str]:
    """Set the configs' head counts (and ``head_dim``) to the pruned attention modules' when all agree.

    Then rebuild one attention module from the updated config (``type(module)(config, layer_idx)``, as
    the model's own constructor does) and compare its projections' shapes: a family that derives
    ``head_dim`` from ``hidden_size / num_attention_heads`` cannot describe removed heads, which is
    said rather than hidden. Returns one line per problem."""
    layouts = find_layouts(model)
    if not layouts:
        return []
    shapes = {(lay.heads, lay.kv_heads, lay.head_dim) for lay in layouts}
    shared = [lay for lay in layouts if getattr(lay.module, "config", None) is not None]
    problems = []
    for config in configs:
        if not any(getattr(lay.module, "config", None) is config for lay in shared):
            continue
        old = (getattr(config, "num_attention_heads", None), _kv_count(config))
        if len(shapes) != 1:
            if any((lay.heads, lay.kv_heads) != old for lay in layouts):
                problems.append(
                    f"config.num_attention_heads stays {old[0]}: the attention layers now have "
                    f"{sorted(s[0] for s in shapes)} heads, which one number cannot describe"
                )
            continue
        heads, kv, head_dim = next(iter(shapes))
        if (heads, kv) == old:
            continue
        for attr in ("num_attention_heads", "n_head"):
            if hasattr(config, attr):
                setattr(config, attr, heads)
        for attr in KV_COUNTS:
            if isinstance(getattr(config, attr, None), int):
                setattr(config, attr, kv)
        config.head_dim = head_dim  # else derived as hidden_size / num_attention_heads, now wrong
        problems += _check_rebuild(shared[0], config)
    return problems


def _kv_count(config: Any) -> int | None:
    for attr in KV_COUNTS:
        if isinstance(getattr(config, attr, None), int):
            return getattr(config, attr)
    return getattr(config, "num_attention_heads", None)


def _check_rebuild(layout: HeadLayout, config: Any) -> list[str]:
    pruned = [tuple(p.weight.shape) for p in (layout.q, layout.k, layout.v, layout.o)]
    rebuilt = _rebuilt_shapes(layout, config)
    if rebuilt is not None and rebuilt != pruned:
        return [
            f"{type(layout.module).__name__} built from the updated config has projections {rebuilt}, not the "
            f"pruned {pruned} (it derives head_dim from hidden_size / num_attention_heads)"
        ]
    return []


def _rebuilt_shapes(layout: HeadLayout, config: Any) -> list[tuple[int, ...]] | None:
    """The projection shapes of the module's class built from ``config`` (None if it cannot be built so)."""
    for args in ((config, getattr(layout.module, "layer_idx", 0)), (config,)):  # the constructors' two forms
        try:
            with torch.device("meta"):  # shapes only, no memory and no random draws
                fresh = type(layout.module)(*args)
            return [tuple(getattr(fresh, p).weight.shape) for p in PROJECTIONS]
        except Exception:  # noqa: BLE001 - a constructor of another signature: try the next, else nothing to compare
            continue
    return None


def undescribable(layout: HeadLayout) -> str | None:
    """Why the module's config could not describe it with a key/value group fewer, or None if it can.

    Checked when the pruner is built, on a copy of the config with the counts one group lower, by
    building the module's class from it (:func:`sync_head_configs` does the same after removal)."""
    config = getattr(layout.module, "config", None)
    if config is None or not hasattr(config, "num_attention_heads") or layout.kv_heads < 2:
        return None
    probe = copy.deepcopy(config)
    probe.num_attention_heads = layout.heads - layout.group_size
    for attr in KV_COUNTS:
        if isinstance(getattr(probe, attr, None), int):
            setattr(probe, attr, layout.kv_heads - 1)
    probe.head_dim = layout.head_dim
    shapes = _rebuilt_shapes(layout, probe)
    width = (layout.heads - layout.group_size) * layout.head_dim
    if shapes is not None and (shapes[0][0], shapes[3][1]) != (width, width):
        return (
            f"{type(layout.module).__name__} derives head_dim from hidden_size / num_attention_heads, so its "
            "config cannot describe fewer heads"
        )
    return None
