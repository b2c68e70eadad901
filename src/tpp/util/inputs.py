"""Model inputs and outputs in the three forms that PyTorch models take and return.

Inputs: a tensor (``model(x)``), a tuple or list (positional: ``model(*x)``) or a dict (keyword:
``model(**x)``, as ``transformers`` models take ``{"pixel_values": x}``), the convention of
Torch-Pruning's ``example_inputs``. Outputs: a tensor, a tuple/list whose first element is the
logits, or a mapping with a ``logits`` entry (``transformers``' ``ModelOutput``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Union

import torch
from torch import nn

from tpp.errors import ModelError

Inputs = Union[torch.Tensor, tuple, list, Mapping]


def call_model(model: nn.Module, inputs: Inputs) -> Any:
    """Run ``model`` on ``inputs`` in whichever of the three forms they are."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def call_without_cache(model: nn.Module, inputs: Inputs) -> Any:
    """Run ``model`` on ``inputs`` as :func:`call_model` does, without a key/value cache.

    A causal language model of ``transformers`` returns its key/value cache (a ``DynamicCache``)
    next to the logits unless ``use_cache=False`` is passed; the cache is no tensor and its shapes
    follow the attention heads, so the pruner traces and checks the model without it. The flag is
    passed for this call only (the user's ``config.use_cache`` is left alone), and only to a model
    whose config has a ``use_cache`` entry and whose ``forward`` takes it."""
    args, kwargs = call_arguments(model, inputs, cache=False)
    return model(*args, **kwargs)


def call_arguments(model: nn.Module, inputs: Inputs, cache: bool = True) -> tuple[tuple, dict]:
    """``(args, kwargs)`` of the call :func:`call_model` makes (``cache=False``: as
    :func:`call_without_cache` makes it)."""
    if isinstance(inputs, Mapping):
        args, kwargs = (), dict(inputs)
    elif isinstance(inputs, (tuple, list)):
        args, kwargs = tuple(inputs), {}
    else:
        args, kwargs = (inputs,), {}
    if not cache and "use_cache" not in kwargs and _takes_use_cache(model):
        kwargs["use_cache"] = False
    return args, kwargs


def _takes_use_cache(model: nn.Module) -> bool:
    if not getattr(getattr(model, "config", None), "use_cache", False):
        return False
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return "use_cache" in parameters


def output_tensors(output: Any) -> list[torch.Tensor]:
    """Every tensor of a model's output, in order, following only tensors: ``ModelOutput``/dict
    values, tuple/list items; anything else (a ``transformers`` cache object, ``None``) is skipped."""
    if torch.is_tensor(output):
        return [output]
    if isinstance(output, Mapping):
        items = list(output.values())
    elif isinstance(output, (tuple, list)):
        items = list(output)
    else:
        return []
    return [t for item in items for t in output_tensors(item)]


def logits_of(output: Any) -> torch.Tensor:
    """The logits tensor in a model's output (tensor, ``ModelOutput``/dict, or tuple/list).

    Raises:
        ModelError: the output holds no tensor.
    """
    if torch.is_tensor(output):
        return output
    if isinstance(output, Mapping):
        if torch.is_tensor(output.get("logits")):
            return output["logits"]
        values = [v for v in output.values() if torch.is_tensor(v)]
    elif isinstance(output, (tuple, list)):
        values = [v for v in output if torch.is_tensor(v)]
    else:
        values = []
    if not values:
        raise ModelError(
            f"the model returned {type(output).__name__}, which holds no logits tensor; "
            "wrap it so that forward() returns the logits"
        )
    return values[0]


def move_inputs(inputs: Inputs, device: torch.device | str) -> Inputs:
    """``inputs`` with every tensor moved to ``device`` (same structure)."""
    if torch.is_tensor(inputs):
        return inputs.to(device)
    if isinstance(inputs, Mapping):
        return {k: move_inputs(v, device) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(move_inputs(v, device) for v in inputs)
    return inputs


def input_tensors(inputs: Inputs) -> list[torch.Tensor]:
    """Every tensor in ``inputs``, in order."""
    if torch.is_tensor(inputs):
        return [inputs]
    values = inputs.values() if isinstance(inputs, Mapping) else inputs if isinstance(inputs, (tuple, list)) else ()
    return [t for v in values for t in input_tensors(v)]


def batch_size_of(inputs: Inputs) -> int:
    """The leading dimension of the first input tensor (1 if there is none)."""
    tensors = input_tensors(inputs)
    return int(tensors[0].shape[0]) if tensors and tensors[0].dim() else 1


def input_signature(inputs: Inputs) -> dict[str, Any]:
    """Plain data (shapes, dtypes, structure) from which :func:`inputs_from_signature` rebuilds
    inputs of the same form, e.g. to re-trace a saved model."""

    def describe(t: torch.Tensor) -> dict[str, Any]:
        return {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}

    if torch.is_tensor(inputs):
        return {"kind": "tensor", "items": [describe(inputs)]}
    if isinstance(inputs, Mapping):
        return {"kind": "dict", "keys": [str(k) for k in inputs], "items": [describe(v) for v in inputs.values()]}
    return {"kind": "tuple", "items": [describe(v) for v in inputs]}


def inputs_from_signature(signature: Mapping[str, Any], device: torch.device | str = "cpu") -> Inputs:
    """Zero tensors in the form described by :func:`input_signature` (older files: a list of shapes)."""
    if not isinstance(signature, Mapping):  # the first plan format stored a list of input shapes
        tensors = [torch.zeros(shape, device=device) for shape in signature]
        return tensors[0] if len(tensors) == 1 else tuple(tensors)
    tensors = [
        torch.zeros(item["shape"], dtype=getattr(torch, item["dtype"]), device=device) for item in signature["items"]
    ]
    if signature["kind"] == "tensor":
        return tensors[0]
    if signature["kind"] == "dict":
        return dict(zip(signature["keys"], tensors))
    return tuple(tensors)
