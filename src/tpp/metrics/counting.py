"""Parameter and FLOP counts, totals and per layer, via Torch-Pruning's counter.

MACs follow the paper's accounting: the multiply-accumulates of convolution and linear layers
(weights plus one per output element for the bias), per input image. "FLOPs" is 2 x MACs, as the
TPP paper prints them (ResNet-56 on CIFAR-10: 0.85M params, 0.25 GFLOPs). With this convention the
pruned ResNet-56 speedups of the paper's Table 1 come out exactly (1.45/1.99/3.59x at ratios
0.3/0.5/0.7); Torch-Pruning's total, which also counts BatchNorm, ReLU modules and pooling, misses
3.59x by 1% (it gives 3.55x). That total is kept as ``all_macs``. Functional ops (``F.relu``,
residual additions) are counted by neither. ``params`` counts every parameter (weights, biases,
BN affine).
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
from torch import nn

from tpp.util.inputs import call_model, move_inputs
from tpp.util.modules import device_of, unwrap


def human(value: float, digits: int = 2) -> str:
    """Short decimal form as papers print it: ``853018 -> '0.85M'``, ``2.5e8 -> '0.25G'``."""
    for unit, scale, threshold in (("G", 1e9, 1e8), ("M", 1e6, 1e5), ("K", 1e3, 1e3)):
        if abs(value) >= threshold:
            return f"{value / scale:.{digits}f}{unit}"
    return f"{value:.0f}"


@dataclass(frozen=True)
class Counts:
    """Model size and cost per input image: ``params``, ``macs``, ``flops`` (= 2 x macs)."""

    params: int
    macs: int
    flops: int
    all_macs: int = 0  # Torch-Pruning's total, BN/ReLU-module/pooling elements included

    def speedup_over(self, baseline: Counts) -> float:
        """How many times fewer FLOPs than ``baseline`` (the paper's "speedup"; 2.0 = half)."""
        return baseline.flops / self.flops if self.flops else float("inf")

    def params_reduction(self, baseline: Counts) -> float:
        """Fraction of ``baseline``'s parameters removed (0.5 = half pruned)."""
        return 1.0 - self.params / baseline.params if baseline.params else 0.0

    def flops_reduction(self, baseline: Counts) -> float:
        """Fraction of ``baseline``'s FLOPs removed."""
        return 1.0 - self.flops / baseline.flops if baseline.flops else 0.0

    def as_dict(self) -> dict[str, int]:
        """``{"params", "macs", "flops"}`` as plain ints."""
        return asdict(self)

    def __str__(self) -> str:
        return f"params {human(self.params)}, MACs {human(self.macs)}, FLOPs {human(self.flops)}"


def _first_example(inputs: Any) -> Any:
    """Keep only the first item of the batch: TP adds Linear biases once per batch, not per image,
    so counting on a batch of one is the only batch-size-independent way."""
    if torch.is_tensor(inputs):
        return inputs[:1] if inputs.dim() else inputs
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(_first_example(x) for x in inputs)
    if isinstance(inputs, dict):
        return {k: _first_example(v) for k, v in inputs.items()}
    return inputs


@torch.no_grad()
def _tp_count(model: nn.Module, inputs: Any, layer_wise: bool) -> tuple:
    import torch_pruning as tp  # imported lazily: it is slow to import

    # TP deep-copies and switches the copy to eval; the original's modes and BN stats are untouched.
    # Its counter prints a notice for keyword-only inputs (dicts), which says nothing to our users.
    with contextlib.redirect_stdout(io.StringIO()):
        return tp.utils.count_ops_and_params(model, inputs, layer_wise=layer_wise)


# The layers whose multiply-accumulates the paper counts.
_COUNTED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)


def count(model: nn.Module, example_inputs: Any) -> Counts:
    """Count parameters, MACs and FLOPs of ``model`` per image of ``example_inputs``.

    ``example_inputs`` is a tensor (or tuple/dict of tensors) with any batch size; only its first
    example is used. DataParallel/DDP wrappers are unwrapped.
    """
    bare = unwrap(model)
    inputs = _first_example(move_inputs(example_inputs, device_of(bare)))
    all_macs, params, layer_macs, _ = _tp_count(bare, inputs, layer_wise=True)
    macs = int(round(sum(v or 0 for m, v in layer_macs.items() if isinstance(m, _COUNTED_LAYERS))))
    return Counts(params=int(params), macs=macs, flops=2 * macs, all_macs=int(round(all_macs)))


def layer_table(model: nn.Module, example_inputs: Any) -> list[dict[str, Any]]:
    """One row per leaf module that ran in the forward pass, in execution order.

    Row keys: ``name``, ``type``, ``output_shape`` (per image, no batch dimension), ``params``
    (the module's own), ``macs`` and ``flops`` (= 2 x macs) per image. Modules the counter does
    not know (e.g. ``Identity``, custom layers) show 0 MACs.
    """
    bare = unwrap(model)
    inputs = _first_example(move_inputs(example_inputs, device_of(bare)))
    leaves = {m: n for n, m in bare.named_modules() if not any(True for _ in m.children())}
    shapes: dict[nn.Module, tuple] = {}

    def record(module: nn.Module, _inputs: Any, output: Any) -> None:
        if module not in shapes:
            out = output[0] if isinstance(output, (tuple, list)) and output else output
            shapes[module] = tuple(out.shape[1:]) if torch.is_tensor(out) else ()

    # shapes come from a throw-away copy so hooks and eval() never touch the caller's model
    probe = copy.deepcopy(bare).eval()
    probe_leaves = dict(zip(bare.modules(), probe.modules()))
    handles = [probe_leaves[m].register_forward_hook(record) for m in leaves]
    try:
        with torch.no_grad():
            call_model(probe, inputs)
    finally:
        for handle in handles:
            handle.remove()
    _, _, layer_macs, _ = _tp_count(bare, inputs, layer_wise=True)
    by_probe = {probe_leaves[m]: m for m in leaves}
    rows = []
    for probe_module, shape in shapes.items():  # dicts keep insertion = execution order
        module = by_probe[probe_module]
        macs = int(round(layer_macs.get(module) or 0))
        rows.append(
            {
                "name": leaves[module],
                "type": type(module).__name__,
                "output_shape": shape,
                "params": sum(p.numel() for p in module.parameters(recurse=False)),
                "macs": macs,
                "flops": 2 * macs,
            }
        )
    return rows


def totals(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Sum ``params``, ``macs`` and ``flops`` over :func:`layer_table` rows."""
    return {key: sum(int(r[key]) for r in rows) for key in ("params", "macs", "flops")}
