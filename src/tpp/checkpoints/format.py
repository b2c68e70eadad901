"""Safe checkpoint files: atomic saves, weights-only loads, one-line errors.

A tpp checkpoint is a plain dict (see :func:`make_payload`) holding only tensors, numbers,
strings and containers, so it is always loaded with ``torch.load(..., weights_only=True)``: a
file carrying pickled Python objects is refused rather than executed. Raw ``state_dict`` files
(e.g. from ``torch.save(model.state_dict())``) are accepted wherever a checkpoint is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from tpp.checkpoints.reading import check_layout, read_weights_only
from tpp.data.record import RECORD_KEY
from tpp.errors import CheckpointError
from tpp.models.specs import infer_record
from tpp.models.weights import dtype_mismatch
from tpp.util.atomic import atomic_write
from tpp.util.modules import unwrap

FORMAT = "tpp.checkpoint"
FORMAT_VERSION = 1


def make_payload(model: nn.Module, **fields: Any) -> dict[str, Any]:
    """A checkpoint dict: ``format``, ``version``, ``model`` (state_dict), ``tpp_spec``,
    ``tpp_plan`` (only for pruned models), ``tpp_data`` (the data the model is trained for, when
    ``model.tpp_data`` holds it: :func:`tpp.data.record.data_record`) + ``fields``.

    Typical ``fields`` of a training run: ``optimizer``, ``epoch`` (completed epochs),
    ``best_top1``, ``rng`` (:func:`tpp.training.seeding.get_rng_state`), ``config``.
    """
    bare = unwrap(model)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": bare.state_dict(),
        "tpp_spec": infer_record(bare) or {},
    }
    plan = getattr(bare, "tpp_plan", None)
    if plan:  # a pruned model: the channel plan needed to rebuild its shapes (plain lists)
        payload["tpp_plan"] = plan
    data = getattr(bare, RECORD_KEY, None)
    if isinstance(data, dict) and data:  # how its inputs are prepared, so that eval cannot get them wrong
        payload[RECORD_KEY] = data
    payload.update(fields)
    return payload


def save_checkpoint(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Atomically save ``payload`` with ``torch.save``; an existing file is replaced only on success.

    Raises:
        CheckpointError: the directory does not exist or is not writable, or the disk is full.
    """
    data = dict(payload)
    return atomic_write(path, lambda handle: torch.save(data, handle))


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint (payload dict or raw state_dict) with ``weights_only=True``.

    Raises:
        CheckpointError: missing file, unreadable/corrupt file, a file that holds pickled code,
            or one whose entries do not have the layout of a checkpoint (see ``check_layout``).
    """
    path = Path(path)
    return check_layout(read_weights_only(path, kind="checkpoint", map_location=map_location), path)


def extract_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The model state_dict inside a payload (key ``model`` or ``state_dict``) or a raw state_dict,
    with any leading ``module.`` (DataParallel/DDP) removed from its keys."""
    inner = checkpoint
    for key in ("model", "state_dict"):
        candidate = checkpoint.get(key)
        if isinstance(candidate, Mapping):
            inner = candidate
            break
    state = {k: v for k, v in inner.items() if torch.is_tensor(v)}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _shape(value: Any) -> str:
    return "[" + ",".join(str(d) for d in value.shape) + "]"


def load_model_weights(model: nn.Module, checkpoint: Mapping[str, Any], source: str | os.PathLike[str]) -> None:
    """Copy weights from a payload or raw state_dict into ``model`` (strict: keys and shapes).

    Raises:
        CheckpointError: one line naming the first missing/unexpected/mismatched entry, or a
            weight that is not floating-point (integer, bool, complex) where the model's is.
    """
    bare = unwrap(model)
    state = extract_state_dict(checkpoint)
    if not state:
        raise CheckpointError(f"{source} holds no model weights; point --checkpoint at a tpp checkpoint")
    expected = bare.state_dict()
    problem = None
    for key, value in expected.items():
        if key not in state:
            problem = f"{key} {_shape(value)} missing from the checkpoint"
        elif state[key].shape != value.shape:
            problem = f"{key} {_shape(state[key])} in the checkpoint vs {_shape(value)} in the model"
        if problem:
            break
    if problem is None:
        extra = [key for key in state if key not in expected]
        if extra:
            problem = f"unexpected {extra[0]} {_shape(state[extra[0]])} in the checkpoint"
    if problem is not None:
        raise CheckpointError(
            f"checkpoint {source} was saved from a different architecture (first mismatch: {problem}); "
            "pass --model matching the checkpoint"
        )
    wrong = dtype_mismatch(expected, state)
    if wrong:
        raise CheckpointError(
            f"checkpoint {source} holds weights that are not real floating-point numbers where the model has them "
            f"({wrong[0]}{f' and {len(wrong) - 1} more' if len(wrong) > 1 else ''}); they would be cast silently: "
            "re-create the checkpoint from a float model"
        )
    bare.load_state_dict(state, strict=True)


def non_finite_weight(model: nn.Module) -> str | None:
    """The name of the first floating-point weight or buffer of ``model`` holding a NaN or an
    infinity (a diverged run saves them without complaint), or None."""
    for name, value in unwrap(model).state_dict().items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return name
    return None
