"""Run the removal check in float64, whatever the model's own precision, without touching the model.

Removing zeroed channels only changes the order of floating-point sums. In float32 that is ~1e-7
relative per layer, but depth amplifies it: a real 30-layer language model (SmolLM2-135M) differs by
2.9e-5 after an exact removal, past any tolerance that still catches a real change. In float64 the
same reordering is ~1e-16, and a real change (a wrong channel removed) is still 1e-3 or more, so the
check compares float64 outputs against a tolerance far from both (:data:`FLOAT64_TOLERANCE`). Some
layers compute in float32 whatever the model's dtype (``transformers``' Llama RMSNorm casts to float32),
so a 1e-16 difference can still flip a float32 rounding there: SmolLM2 after GReg-1 differed by 5.6e-8
after an exact removal. The tolerance, 1e-5, sits above that and two orders below a real change.

:func:`run_float64` calls the model through ``torch.func.functional_call`` with float64 copies of its
floating-point parameters and buffers (https://pytorch.org/docs/stable/generated/torch.func.functional_call.html):
the module, its parameter objects, their gradients (which a DistributedDataParallel reducer holds
as views of its buckets) and the optimizer are never touched. Tied parameters stay tied in the call.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.func import functional_call

from tpp.util.inputs import call_arguments

# Relative tolerance of the check in float64 (see the module docstring).
FLOAT64_TOLERANCE = 1e-5


def run_float64(model: nn.Module, example_inputs: Any) -> Any:
    """``model``'s output on ``example_inputs`` (without a key/value cache) computed in float64.

    Floating-point inputs are cast too (integer token ids stay). Raises whatever the model raises
    in float64 (a kernel without float64, say): the caller then checks in the model's own precision."""
    tensors = {name: _as_float64(t) for name, t in model.named_parameters()}
    tensors.update({name: _as_float64(t) for name, t in model.named_buffers()})
    args, kwargs = call_arguments(model, cast_floats(example_inputs, torch.float64), cache=False)
    # functional_call puts each tensor back by name; a module registered under two names (an alias) can
    # get the float64 copy back under one of them, so every module's own tensors are put back here too
    held = [
        (slots, name, t) for m in model.modules() for slots in (m._parameters, m._buffers) for name, t in slots.items()
    ]
    try:
        return functional_call(model, tensors, args, kwargs, tie_weights=True, strict=False)
    finally:
        for slots, name, tensor in held:
            if slots.get(name) is not tensor:
                slots[name] = tensor


def _as_float64(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to(torch.float64) if tensor.is_floating_point() else tensor


def cast_floats(inputs: Any, dtype: torch.dtype) -> Any:
    """``inputs`` (tensor, tuple/list or dict) with every floating-point tensor cast to ``dtype``."""
    if torch.is_tensor(inputs):
        return inputs.to(dtype) if inputs.is_floating_point() else inputs
    if isinstance(inputs, dict):
        return {k: cast_floats(v, dtype) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(cast_floats(v, dtype) for v in inputs)
    return inputs
