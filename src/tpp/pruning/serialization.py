"""Save and load pruned models as data: a channel plan plus a state_dict, never a pickled module.

The plan is Torch-Pruning's pruning history (``[layer name, out-channel?, indices]`` per group, plain
lists), the form, shapes and dtypes of the example inputs used to trace the graph, and the model's spec
(``model.tpp_spec``: a registry name, or a ``timm:``/``torchvision:``/``hf:``/``module:function`` spec, see
:mod:`tpp.models.specs`). Loading rebuilds the unpruned architecture, replays the plan, then loads the weights with
``torch.load(weights_only=True)``, so a file can never run code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from tpp.errors import CheckpointError, PruningError
from tpp.pruning.graph import build_graph
from tpp.util.inputs import input_signature, inputs_from_signature
from tpp.util.modules import device_of, unwrap
from tpp.training.atomic import atomic_write

FORMAT = "tpp-pruned-v1"


def record_plan(model: nn.Module, history: list, example_inputs: Any) -> None:
    """Append a pruning history to the plan carried by ``model`` (attribute ``tpp_plan``)."""
    plan = getattr(model, "tpp_plan", None) or {"history": [], "inputs": input_signature(example_inputs)}
    for name, is_out, idxs in history:
        plan["history"].append([str(name), bool(is_out), [int(i) for i in idxs]])
    model.tpp_plan = plan


def save_pruned(model: nn.Module, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``model`` (pruned by tpp) to ``path`` atomically, as plan + state_dict.

    The architecture is recorded as ``model.tpp_spec`` (models built by tpp) or, for a
    ``transformers`` model, its class and configuration, so :func:`load_pruned` needs no base model."""
    from tpp.models.specs import infer_record

    module = unwrap(model)
    plan = getattr(module, "tpp_plan", None)
    if plan is None:
        plan = {"history": [], "input_shapes": None}
    payload = {
        "format": FORMAT,
        "spec": infer_record(module) or {},
        "plan": plan,
        "state_dict": module.state_dict(),
        "extra": extra or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: torch.save(payload, handle))
    return path


def read_pruned(path: str | os.PathLike) -> dict:
    """Read and validate a pruned-model file (weights only; no code runs)."""
    from tpp.training.safe_load import check_layout, read_weights_only

    path = Path(path)
    fix = "re-create it with tpp.save_pruned"
    payload = check_layout(read_weights_only(path, kind="pruned model", fix=fix), path, "pruned model", fix)
    if payload.get("format") != FORMAT or not isinstance(payload.get("state_dict"), dict):
        raise CheckpointError(
            f"{path} is not a tpp pruned model (no format {FORMAT!r} entry with a state_dict); pass the "
            "pruned_model.pt that `tpp prune` writes, or save the model with tpp.save_pruned")
    return payload


def load_pruned(path: str | os.PathLike, base_model: nn.Module | None = None) -> nn.Module:
    """Rebuild a model saved by :func:`save_pruned`.

    Args:
        path: the file.
        base_model: an *unpruned* instance of the architecture. If omitted, it is built from the
            spec stored in the file (models made by ``tpp.create_model`` or
            ``tpp.models.build_model``; a ``module:function`` spec must be importable here).
    """
    payload = read_pruned(path)
    if base_model is None:
        from tpp.models import model_from_record

        spec = dict(payload["spec"] or {})
        if "name" not in spec and "spec" not in spec:
            raise CheckpointError(f"{path} does not name its architecture; pass base_model=")
        base_model = model_from_record(spec, source=str(path))
    module = unwrap(base_model)
    replay_plan(module, payload["plan"], path)
    try:
        module.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()
        raise CheckpointError(f"{path} does not match the given base model ({first}); pass the matching base_model") from None
    return base_model


def replay_plan(module: nn.Module, plan: dict | None, source: str | os.PathLike) -> None:
    """Shrink an unpruned ``module`` to the shapes recorded in ``plan`` (Torch-Pruning history)."""
    if not plan or not plan.get("history"):
        return
    # files written before dict/tuple inputs were recorded have "input_shapes"
    signature = plan["inputs"] if "inputs" in plan else plan["input_shapes"]
    try:  # a plan traced on other inputs fails in the trace itself
        graph = build_graph(module, inputs_from_signature(signature, device_of(module)))
        graph.load_pruning_history([[n, o, list(i)] for n, o, i in plan["history"]])
    except (AttributeError, IndexError, KeyError, TypeError, ValueError, RuntimeError, PruningError) as error:
        raise CheckpointError(
            f"{source} was pruned from a different architecture ({type(error).__name__}); "
            "pass the matching model") from None
    module.tpp_plan = plan
