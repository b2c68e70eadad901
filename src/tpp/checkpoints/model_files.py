"""Pruned (and any other) models saved as data and rebuilt: architecture record + channel plan + weights.

:func:`save_pruned` writes the one checkpoint format of :mod:`tpp.checkpoints.format`; a training
checkpoint of a pruned model carries the same record and plan, so :func:`load_pruned` rebuilds either
kind. Files of the first pruned-model format (``tpp-pruned-v1``: ``spec``/``plan``/``state_dict``) are
still read. The architecture comes from ``tpp_spec`` (a registry name, a ``timm:``/``torchvision:``/
``hf:`` spec, or a ``module:function`` factory under the rules of :func:`tpp.models.model_from_record`),
so a file never runs code: it may name a factory whose module is not imported, but only the caller's
``base_model=`` (the CLI's ``--model``) allows importing it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch.nn as nn

from tpp.checkpoints.format import FORMAT, make_payload, save_checkpoint
from tpp.checkpoints.reading import check_layout, read_weights_only
from tpp.data.record import RECORD_KEY
from tpp.errors import CheckpointError
from tpp.models.weights import dtype_mismatch
from tpp.pruning.history import replay_plan
from tpp.util.modules import unwrap

LEGACY_PRUNED_FORMAT = "tpp-pruned-v1"


def normalise(payload: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint dict in the current layout (``model``/``tpp_spec``/``tpp_plan``), whatever tpp wrote it."""
    if payload.get("format") != LEGACY_PRUNED_FORMAT:
        return payload
    return {
        "format": FORMAT,
        "version": 1,
        "model": payload.get("state_dict"),
        "tpp_spec": payload.get("spec") or {},
        "tpp_plan": payload.get("plan"),
        "extra": payload.get("extra") or {},
    }


def save_pruned(model: nn.Module, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``model`` (pruned by tpp, or not) to ``path`` atomically: architecture record, plan, weights.

    The architecture is ``model.tpp_spec`` (models built by tpp) or, for a ``transformers`` model, its
    class and configuration, so :func:`load_pruned` needs no base model. ``extra`` is kept as is."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(path, make_payload(model, extra=extra or {}))


def read_pruned(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a model file (weights only; no code runs), in the current layout."""
    path = Path(path)
    fix = "re-create it with tpp.save_pruned"
    payload = normalise(check_layout(read_weights_only(path, kind="pruned model", fix=fix), path, "pruned model", fix))
    if payload.get("format") != FORMAT or not isinstance(payload.get("model"), dict):
        raise CheckpointError(
            f"{path} is not a tpp model file (no {FORMAT!r} format entry with model weights); pass the "
            "pruned_model.pt that `tpp prune` writes, or save the model with tpp.save_pruned"
        )
    return payload


def pending_plan(module: nn.Module, plan: dict | None, weights: dict[str, Any]) -> dict | None:
    """``plan`` without the steps whose layer already has its saved shape in ``module``.

    The pruner keeps a ``transformers`` config true to the pruned widths (``intermediate_size``,
    head counts), and a model saved without a ``tpp_spec`` is recorded with its config as it is
    then: rebuilt from that record, those layers are already pruned, and replaying their steps
    would cut them a second time. A width the config could not express (layers of different widths)
    is still original in the rebuilt model, and its steps are replayed."""
    if not plan or not plan.get("history"):
        return plan
    state = module.state_dict()

    def applied(step_name: str) -> bool:
        # a step names a layer ("model.layers.0.mlp.up_proj") or a kind and a module ("heads:...self_attn"):
        # applied when every weight under that module already has its saved shape
        name = step_name.rpartition(":")[2]
        keys = [k for k in state if k.startswith(f"{name}.") and k in weights]
        return bool(keys) and all(tuple(state[k].shape) == tuple(weights[k].shape) for k in keys)

    history = [step for step in plan["history"] if not applied(str(step[0]))]
    return plan if len(history) == len(plan["history"]) else {**plan, "history": history}


def load_pruned(path: str | os.PathLike, base_model: nn.Module | str | None = None) -> nn.Module:
    """Rebuild a model saved by :func:`save_pruned` (or any tpp checkpoint of a model).

    Args:
        path: the file.
        base_model: an *unpruned* instance of the architecture, or the model spec to build it
            from (``"mymodels:small_cnn"``, ``"resnet56"``, ...; see :mod:`tpp.models.specs`),
            built with the classes and input channels the file records. If omitted, it is built
            from the record in the file (models made by ``tpp.create_model`` or
            ``tpp.models.build_model``, ``transformers`` models). A file may *name* a
            ``module:function`` factory but not *allow* it: its module must be imported already,
            or you pass the spec here, which is your word that its code may run.

    Raises:
        CheckpointError: unreadable file, a factory the file alone may not run, or weights that
            do not fit the base model.
        ModelError: the spec given or recorded cannot be built here.
    """
    payload = read_pruned(path)
    if base_model is None or isinstance(base_model, str):
        from tpp.models import build_model, model_from_record

        spec = dict(payload.get("tpp_spec") or {})
        if isinstance(base_model, str):
            recorded = spec.get("name") or spec.get("spec")
            if base_model == recorded:  # the user vouches for the file's own record
                base_model = model_from_record(spec)
            else:
                base_model = build_model(
                    base_model,
                    num_classes=int(spec.get("num_classes", 10)),
                    in_channels=int(spec.get("in_channels", 3)),
                    image_size=spec.get("image_size"),
                )
        else:
            if "name" not in spec and "spec" not in spec:
                raise CheckpointError(f"{path} does not name its architecture; pass base_model=")
            base_model = model_from_record(spec, source=str(path))
    module = unwrap(base_model)
    plan = payload.get("tpp_plan")
    replay_plan(module, pending_plan(module, plan, payload["model"]), path)
    if plan and plan.get("history"):
        module.tpp_plan = plan  # the whole record of what was pruned, whatever had to be replayed
    if isinstance(payload.get(RECORD_KEY), dict):  # its data travels on to the next file it is saved to
        module.tpp_data = payload[RECORD_KEY]
    wrong = dtype_mismatch(module.state_dict(), payload["model"])
    if wrong:  # load_state_dict would cast them silently
        raise CheckpointError(
            f"{path} holds weights that are not real floating-point numbers where the model has "
            f"them ({wrong[0]}); re-create the file from a float model"
        )
    try:
        module.load_state_dict(payload["model"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()
        raise CheckpointError(
            f"{path} does not match the given base model ({first}); pass the matching base_model"
        ) from None
    return base_model
