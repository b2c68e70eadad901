"""A model is measured before it is built: first on the meta device (shapes only, no memory),
then for real only if its weights fit the bound.

A spec such as ``{"name": "mlp7_linear", "width": 100000}`` or ``num_classes: 10**9``, recorded in
a file of a few kilobytes, would otherwise allocate tens of gigabytes before anything could look
at it. The bounds:

* any model: at most the memory this machine can spare (:func:`tpp.util.memory.spare_memory`);
* a model rebuilt from a record read from a file, also at most :data:`FILE_FACTOR` times the
  file's size, and never less than :data:`FILE_FLOOR`: an unpruned model's weights are in the
  file itself, and pruning leaves far more than 1/1000 of a model.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
from torch import nn

from tpp.errors import CheckpointError, ModelError
from tpp.util.memory import available_memory, human_size, spare_memory

FILE_FACTOR = 1000
FILE_FLOOR = 2**30


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the parameters and buffers of ``model`` (a tensor shared by two modules once)."""
    seen: set[int] = set()
    total = 0
    for tensor in (*model.parameters(), *model.buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def _file_size(source: str | os.PathLike[str] | None) -> int | None:
    try:
        return os.stat(source).st_size if source is not None else None
    except (OSError, ValueError):
        return None


def file_limit(size: int) -> int:
    """The most weight bytes a model rebuilt from the record in a file of ``size`` bytes may need."""
    return max(FILE_FLOOR, FILE_FACTOR * size)


def build_measured(
    build: Callable[[], nn.Module], spec: str, source: str | os.PathLike[str] | None = None
) -> nn.Module:
    """``build()``, after a first ``build()`` on the meta device showed that the weights fit
    (see the module docstring; ``source``: the file the model's record was read from, if any).

    A builder that cannot run on the meta device (code that reads tensor values, say) is built
    unmeasured: an absurd size then still fails at once in the allocator, a merely large one is
    not caught. tpp's own models and ``transformers`` models build on the meta device.

    Raises:
        CheckpointError: the record in ``source`` describes a model far larger than the file.
        ModelError: the model needs more memory than this machine can spare.
    """
    spare = spare_memory()
    size = _file_size(source)
    from_file = None if size is None else file_limit(size)
    if spare is None and from_file is None:
        return build()
    try:
        with torch.device("meta"):
            probe = build()
        needed = weight_bytes(probe) if isinstance(probe, nn.Module) else 0
        del probe
    except Exception:  # noqa: BLE001 - see the docstring: the real build reports its own errors
        needed = 0
    if size is not None and from_file is not None and needed > from_file:
        raise CheckpointError(
            f"{source} records the model {spec} with {human_size(needed)} of weights, far more than a model rebuilt "
            f"from a {human_size(size)} file may need (at most {human_size(from_file)}); the record is damaged: "
            f"re-create the file, or pass --model {spec} (base_model= in Python) if you trust it"
        )
    if spare is not None and needed > spare:
        raise ModelError(
            f"{spec} needs {human_size(needed)} for its weights, more than this machine can spare "
            f"({human_size(available_memory() or 0)} free); pick a smaller model or fewer classes"
        )
    return build()
