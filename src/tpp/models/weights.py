"""User weight files (``--weights``): ``.safetensors`` or a ``torch.save``-d state_dict, read
without running code, loaded strictly (every key and shape must match)."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from tpp.errors import CheckpointError
from tpp.models.external import require
from tpp.util.files import not_a_regular_file
from tpp.util.modules import unwrap

_SHOWN = 3  # keys named per kind of mismatch


def read_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: ``.safetensors`` (safetensors package) or any other suffix
    read with ``torch.load(weights_only=True)``; a ``{"model"|"state_dict": ...}`` wrapper and
    a ``module.`` (DataParallel) key prefix are removed.

    Raises:
        CheckpointError: missing, unreadable or code-carrying file, or a file with no tensors.
        ModelError: ``.safetensors`` without the safetensors package (names the extra).
    """
    path = Path(path)
    kind = not_a_regular_file(path)
    if kind == "missing":
        raise CheckpointError(f"weights file {path} does not exist; check the path given to --weights")
    if kind is not None:
        raise CheckpointError(
            f"weights file {path} is {kind}, not a regular file; pass a .pt/.pth or .safetensors file to --weights"
        )
    if path.suffix == ".safetensors":
        loader = require("safetensors.torch")
        try:
            state: Mapping[str, Any] = loader.load_file(str(path), device="cpu")
        except Exception as error:
            raise CheckpointError(
                f"{path} is not a readable safetensors file ({type(error).__name__}); "
                "re-save it with safetensors.torch.save_file"
            ) from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise CheckpointError(
                f"{path} holds pickled Python objects that tpp does not load (weights-only "
                "loading never runs code); save the state_dict: torch.save(model.state_dict(), path)"
            ) from None
        except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, UnicodeDecodeError, AttributeError):
            raise CheckpointError(
                f"{path} is not a readable torch weights file (corrupt or truncated?); "
                "re-save it with torch.save(model.state_dict(), path)"
            ) from None
        for key in ("model", "state_dict"):
            if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
                state = state[key]
                break
    tensors = {str(k): v for k, v in state.items() if torch.is_tensor(v)} if isinstance(state, Mapping) else {}
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors; --weights takes a state_dict (.pt/.pth) or .safetensors file")
    for key, value in tensors.items():
        if value.layout != torch.strided or value.is_meta:
            what = "a meta tensor, which holds no values" if value.is_meta else f"a {value.layout} tensor"
            raise CheckpointError(
                f"{path}: {key} is {what}; --weights takes dense tensors with values "
                "(save model.state_dict() of a materialised model)"
            )
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Copy the weights of ``path`` (see :func:`read_weights`) into ``model``; returns it.

    Strict: the file must hold exactly the model's keys with the same shapes. Otherwise a
    one-line :class:`CheckpointError` names the first missing, unexpected and mis-shaped keys,
    and the model is unchanged.
    """
    state = read_weights(path)
    bare = unwrap(model)
    problem = weights_mismatch(bare.state_dict(), state)
    if problem:
        raise CheckpointError(
            f"{path} does not fit the model ({problem}); pass weights saved from the same "
            "--model (and number of classes)"
        )
    bare.load_state_dict(state, strict=True)
    return model


def dtype_mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> list[str]:
    """``'key (int64)'`` for every tensor of ``given`` that is not a real floating-point number where
    ``expected`` holds one: ``load_state_dict`` would cast integers silently and drop the imaginary
    part of complex numbers, so the model would run on weights that are not the file's."""
    return [
        f"{k} ({str(given[k].dtype).removeprefix('torch.')})"
        for k, v in expected.items()
        if k in given and v.is_floating_point() and not given[k].is_floating_point()
    ]


def weights_mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str:
    """'' when ``given`` has exactly ``expected``'s keys and shapes, and floating-point values where
    the model has them, else a short description naming the first differing keys of each kind."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k} {list(given[k].shape)} vs {list(expected[k].shape)} in the model"
        for k in expected
        if k in given and given[k].shape != expected[k].shape
    ]
    parts = []
    for label, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape of", shapes),
        ("not floating-point:", dtype_mismatch(expected, given)),
    ):
        if keys:
            more = f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
            parts.append(f"{label} {', '.join(keys[:_SHOWN])}{more}")
    return "; ".join(parts)
