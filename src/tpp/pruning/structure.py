"""What the traced graph says about a unit's place in a block: gated siblings, heads, joint norms.

These predicates read the DependencyGraph that :func:`tpp.pruning.graph.build_graph` traced (with
the inputs each layer read and the shapes of every reshape). They name no model class:

* :func:`gated_rows`: the layers that produce a unit's channels all read the same tensor and their
  outputs meet in a product (a gated MLP, ``down(act(gate(x)) * up(x))``, as in Llama/Qwen/Mistral/
  Gemma; https://arxiv.org/abs/2002.05202). Such channels are as internal as a plain MLP's hidden
  units: nothing outside the block sees them.
* :func:`head_split`: the layer's output is cut into attention heads by a reshape right after it
  (``[B, T, C] -> [B, T, heads, C / heads]``); such channels can only go as whole heads.
* :func:`is_joint_norm`: a normalisation layer whose statistics span the channels (LayerNorm, RMSNorm
  and the model-specific classes such as ``LlamaRMSNorm``, recognised by name and shape).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch.nn as nn
from torch_pruning import ops

# How far (in element-wise ops: activation, dropout, scaling) a layer's output may travel to its gate.
_GATE_HOPS = 4


def gated_rows(graph: Any, rows: Sequence[nn.Module]) -> bool:
    """Whether ``rows`` (two or more layers) read one tensor and are multiplied together right after."""
    if len(rows) < 2:
        return False
    inputs = getattr(graph, "tpp_layer_inputs", {})
    keys = [inputs.get(m) for m in rows]
    if keys[0] is None or any(k is not keys[0] and k != keys[0] for k in keys[1:]):
        return False
    reached = [_products_after(graph, m) for m in rows]
    return bool(set.intersection(*reached))


def _products_after(graph: Any, module: nn.Module) -> set[int]:
    """The element-wise product nodes reached from ``module``'s output through element-wise ops only."""
    node = graph.module2node.get(module)
    found: set[int] = set()
    frontier = list(node.outputs) if node is not None else []
    for _ in range(_GATE_HOPS):
        following = []
        for n in frontier:
            if not isinstance(n.module, ops._ElementWiseOp):
                continue
            name = str(getattr(n.module, "_grad_fn", ""))
            if name.startswith("MulBackward"):
                found.add(id(n))
            elif not name.startswith(("AddBackward", "SubBackward", "CatBackward")):
                following.extend(n.outputs)
        frontier = following
    return found


def head_split(graph: Any, module: nn.Module) -> tuple[list[int], list[int]] | None:
    """``(shape before, shape after)`` of a reshape that splits ``module``'s output channels into
    heads, found within a few element-wise ops after the layer; None if there is none."""
    node = graph.module2node.get(module)
    if node is None:
        return None
    frontier, seen = list(node.outputs), set()
    for _ in range(_GATE_HOPS):
        following = []
        for n in frontier:
            if id(n) in seen:
                continue
            seen.add(id(n))
            if isinstance(n.module, ops._ReshapeOp):
                shapes = getattr(graph, "tpp_reshape_shapes", {}).get(n.grad_fn)
                if shapes is not None and _splits_last(*shapes):
                    return list(shapes[0]), list(shapes[1])
            elif isinstance(n.module, (ops._ElementWiseOp, ops._SplitOp)):  # bias, scaling; a fused q/k/v split
                following.extend(n.outputs)
        frontier = following
    return None


def _splits_last(before: tuple[int, ...], after: tuple[int, ...]) -> bool:
    """Whether a reshape cuts the last (channel) dimension into several, keeping the leading ones:
    ``[B, T, C] -> [B, T, heads, C / heads]`` (or ``[B, T, heads, 3, d]``)."""
    lead = len(before) - 1
    if lead < 0 or len(after) <= len(before) or tuple(after[:lead]) != tuple(before[:lead]):
        return False
    return math.prod(after[lead:]) == before[-1] and sum(d > 1 for d in after[lead:]) > 1


def reduces_channels(graph: Any, op: nn.Module) -> bool:
    """Whether graph op ``op`` is a mean/variance/norm over the channel dimension (an RMSNorm or LayerNorm
    written with tensor ops: its statistics span every channel). The channel dimension is 1 for 4-D
    feature maps and the last one otherwise (tokens ``[B, T, C]``)."""
    name = str(getattr(op, "_grad_fn", ""))
    if not isinstance(op, ops._ElementWiseOp) or not name.startswith(
        ("MeanBackward", "VarBackward", "StdBackward", "NormBackward", "VarMeanBackward")
    ):
        return False
    node = graph.module2node.get(op)
    grad_fn = getattr(node, "grad_fn", None)
    sizes = getattr(grad_fn, "_saved_self_sym_sizes", None)
    dims = getattr(grad_fn, "_saved_dim", None)
    if sizes is None or dims is None:
        return False
    ndim = len(sizes)
    channel = 1 if ndim == 4 else ndim - 1
    dims = [d - 2**64 if d >= 2**63 else d for d in (dims if isinstance(dims, (tuple, list)) else (dims,))]
    return ndim > 1 and channel in {d % ndim for d in dims}


def is_joint_norm(module: object) -> bool:
    """A normalisation over the channels that is not one of torch's own classes (``LlamaRMSNorm``,
    ``T5LayerNorm``, ...): a leaf module named ``*Norm*`` (not BatchNorm/InstanceNorm) with a 1-D weight."""
    if not isinstance(module, nn.Module) or any(True for _ in module.children()):
        return False
    name = type(module).__name__.lower()
    weight = getattr(module, "weight", None)
    return (
        ("layernorm" in name or "rmsnorm" in name or name.endswith("norm"))
        and "batch" not in name
        and "instance" not in name
        and weight is not None
        and getattr(weight, "dim", lambda: 0)() == 1
    )
