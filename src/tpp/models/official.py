"""Import the base models released with the official TPP code (github.com/MingSun-Tse/TPP).

Its ``main.py`` saves ``torch.save({"arch": ..., "model": <the whole nn.Module>, "state_dict":
..., ...})``, so the released ``resnet56_cifar10.pth`` / ``vgg19_cifar100.pth`` are pickles of
its own classes. They are read with :func:`tpp.util.safe_pickle.load_torch_file` (no code from the
file runs; its classes become inert placeholders), the weights are taken from ``state_dict`` (as
the official code does) or else from the pickled module tree, renamed onto tpp's architecture,
checked shape by shape against :func:`tpp.models.create_model`, and loaded.

Name mapping (official -> tpp):

* CIFAR ResNets (``model/resnet_cifar10.py``): identical names (``conv1``, ``bn1``,
  ``layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}``, ``linear``) except the shortcut, ``downsample`` ->
  ``shortcut``. The option-A shortcut has no weights in either code; the option-B ``*_B`` models
  keep their 1x1 conv + BN under ``downsample.{0,1}`` -> ``shortcut.{0,1}``.
* ``vgg19_C`` (``model/vgg.py``): identical ``features.{i}`` indices and ``classifier``.
* ``mlp_7_linear`` / ``mlp_7_relu`` (``model/mlp.py``): the Linear layers ``net.{0,2,...,12}`` ->
  ``fc1`` ... ``fc7`` (the official MLP reads 32x32 single-channel images, ``in_channels=1``).

``module.`` path components (``nn.DataParallel`` wrappers) are dropped first, as the official
loader does. Pruned official models have other shapes and are refused by the shape check.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tpp.errors import CheckpointError, ConfigError, ModelError
from tpp.models.registry import create_model, model_image_size
from tpp.util.archive import archive_damage
from tpp.util.atomic import describe_os_error
from tpp.util.safe_pickle import is_placeholder_module, load_torch_file, placeholder_state_dict

State = dict[str, torch.Tensor]

OFFICIAL_ARCHS: Mapping[str, str] = {
    **{f"resnet{d}": f"resnet{d}" for d in (20, 32, 56, 110)},
    **{f"resnet{d}_B": f"resnet{d}_b" for d in (20, 32, 56, 110)},
    "vgg19_C": "vgg19_bn",
    "mlp_7_linear": "mlp7_linear",
    "mlp_7_relu": "mlp7_relu",
}
"""``arch`` names of the official code (its ``-a`` option) -> tpp model names."""


def _rename_shortcut(state: State) -> State:
    return {re.sub(r"(^|\.)downsample\.", r"\1shortcut.", key): value for key, value in state.items()}


def _rename_mlp(state: State) -> State:
    # the official FCNet interleaves activations in one Sequential: the k-th Linear is fc{k}
    linear = sorted({int(m.group(1)) for key in state if (m := re.match(r"net\.(\d+)\.", key))})
    rank = {index: k + 1 for k, index in enumerate(linear)}
    renamed: State = {}
    for key, value in state.items():
        m = re.match(r"net\.(\d+)\.(.+)$", key)
        renamed[f"fc{rank[int(m.group(1))]}.{m.group(2)}" if m else key] = value
    return renamed


@dataclass(frozen=True)
class _Layout:
    rename: Callable[[State], State]
    first: str  # tpp key of the first layer's weight: its shape gives in_channels
    last: str  # tpp key of the classifier's weight: its shape gives num_classes


_LAYOUTS: dict[str, _Layout] = {
    **{
        name: _Layout(_rename_shortcut, "conv1.weight", "linear.weight")
        for name in OFFICIAL_ARCHS.values()
        if name.startswith("resnet")
    },
    "vgg19_bn": _Layout(lambda state: dict(state), "features.0.weight", "classifier.weight"),
    "mlp7_linear": _Layout(_rename_mlp, "fc1.weight", "fc7.weight"),
    "mlp7_relu": _Layout(_rename_mlp, "fc1.weight", "fc7.weight"),
}


def _tensor_mapping(obj: Any) -> State | None:
    if isinstance(obj, Mapping) and obj and all(torch.is_tensor(v) for v in obj.values()):
        return {str(k): v.detach() for k, v in obj.items()}
    return None


def official_weights(obj: Any, source: str | os.PathLike[str]) -> tuple[State, str | None]:
    """``(state_dict, arch)`` of an unpickled official checkpoint.

    Accepts the official dict (weights from ``state_dict``, else from the pickled ``model``), a
    bare pickled module, or a raw state_dict. ``arch`` is the recorded architecture name, if any.
    Wrapper ``module.`` components are removed from the keys.

    Raises:
        CheckpointError: the object holds no model weights.
    """
    arch = obj.get("arch") if isinstance(obj, Mapping) else None
    state = None
    if isinstance(obj, Mapping):
        state = _tensor_mapping(obj.get("state_dict"))
        if state is None and is_placeholder_module(obj.get("model")):
            state = placeholder_state_dict(obj["model"])
        if state is None:
            state = _tensor_mapping(obj.get("model")) or _tensor_mapping(obj)
    elif is_placeholder_module(obj):
        state = placeholder_state_dict(obj)
    if not state:
        raise CheckpointError(
            f"{source} holds no model weights (expected the official dict with 'state_dict' or 'model', "
            "a pickled model or a state_dict); point at a checkpoint of the official TPP code"
        )
    stripped = {".".join(part for part in key.split(".") if part != "module"): value for key, value in state.items()}
    return stripped, arch if isinstance(arch, str) else None


def _shape(tensor: torch.Tensor) -> str:
    return "[" + ",".join(str(d) for d in tensor.shape) + "]"


def _infer(state: State, layout: _Layout, name: str) -> tuple[int | None, int | None]:
    num_classes = in_channels = None
    last, first = state.get(layout.last), state.get(layout.first)
    if last is not None and last.dim() == 2:
        num_classes = int(last.shape[0])
    if first is not None and first.dim() == 4:
        in_channels = int(first.shape[1])
    elif first is not None and first.dim() == 2:
        pixels = model_image_size(name) ** 2
        if first.shape[1] % pixels == 0:
            in_channels = int(first.shape[1]) // pixels
    return num_classes, in_channels


def _mismatches(expected: Mapping[str, torch.Tensor], state: State, limit: int = 3) -> list[str]:
    problems = []
    for key, value in expected.items():
        if key not in state:
            problems.append(f"{key} {_shape(value)} missing")
        elif state[key].shape != value.shape:
            problems.append(f"{key} is {_shape(state[key])} in the file, {_shape(value)} in tpp")
    problems += [f"unexpected {key} {_shape(state[key])}" for key in state if key not in expected]
    return problems[:limit]


def _read_official(path: str | os.PathLike[str]) -> Any:
    """The unpickled official file, read once; its zip container (sizes, checksums) is checked first,
    as for every tpp checkpoint, so that a member declaring more than the file can hold is refused
    before torch inflates it."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {describe_os_error(error)}") from None
    damage = archive_damage(Path(path), data)
    if damage:
        raise CheckpointError(f"{path} is not a readable checkpoint ({damage}); re-download the official checkpoint")
    return load_torch_file(os.fspath(path), data)


def load_official(
    path: str | os.PathLike[str],
    model: str | None = None,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
) -> nn.Module:
    """A tpp model carrying the weights of an official TPP checkpoint, read without running code.

    Args:
        path: a ``.pth`` file of the official code (e.g. ``resnet56_cifar10.pth``).
        model: tpp model name; default: the one matching the file's ``arch`` (:data:`OFFICIAL_ARCHS`).
        num_classes / in_channels: default: read from the classifier / first-layer shapes.

    Raises:
        CheckpointError: unreadable file, a pickle that would run code, no weights, or weights
            whose names/shapes differ from the tpp model (one line naming the first few).
        ConfigError: no ``model`` given and the file's ``arch`` is missing or unknown.
        ModelError: ``model`` is not a model the official checkpoints can map onto.
    """
    state, arch = official_weights(_read_official(path), path)
    name = model or OFFICIAL_ARCHS.get(arch or "")
    if name is None:
        recorded = f"records arch {arch!r}, which tpp does not map" if arch else "does not record its arch"
        raise ConfigError(f"{path} {recorded}; pass --model (one of {', '.join(sorted(_LAYOUTS))})")
    layout = _LAYOUTS.get(name)
    if layout is None:
        raise ModelError(f"tpp cannot map official checkpoints onto {name!r}; supported: {', '.join(sorted(_LAYOUTS))}")
    state = layout.rename(state)
    found_classes, found_channels = _infer(state, layout, name)
    net = create_model(
        name, num_classes=num_classes or found_classes or 10, in_channels=in_channels or found_channels or 3
    )
    problems = _mismatches(net.state_dict(), state)
    if problems:
        raise CheckpointError(
            f"{path} does not hold an unpruned {name} ({'; '.join(problems)}); pass the --model the file "
            "was trained as (pruned official models cannot be imported)"
        )
    net.load_state_dict(state, strict=True)
    return net
