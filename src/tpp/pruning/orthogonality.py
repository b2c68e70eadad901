"""Orthogonality losses and the OrthP re-initialisation used by the paper's baselines (docs/method.md#baselines).

* :func:`orth_dist` / :func:`kernel_orthogonality`: KernOrth (Xie et al., 2017), ``||G - I||_F``
  with ``G`` the smaller gram matrix of each layer's flattened filter matrix.
* :func:`deconv_orth_dist` / :func:`conv_orthogonality`: OrthConv (Wang et al., 2020, "Orthogonal
  CNNs"), orthogonality of the convolution *operator* expressed as a self-convolution of the kernel.
* :func:`orthogonalize_`: OrthP (Wang et al., 2021a), every layer replaced by the orthogonal factor of
  its QR decomposition, times the activation gain.

Only ``nn.Conv2d`` and ``nn.Linear`` are visited, in registration (forward) order, as in the official
code.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from tpp.util.modules import unwrap

ORTH_LAYER_TYPES = (nn.Conv2d, nn.Linear)
ORTH_KINDS = ("kernorth", "orthconv")


def orth_layers(model_or_layers: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    """The Conv2d/Linear layers of a model in registration order (a list is passed through)."""
    if isinstance(model_or_layers, nn.Module):
        return [m for m in unwrap(model_or_layers).modules() if isinstance(m, ORTH_LAYER_TYPES)]
    return list(model_or_layers)


def orth_dist(weight: torch.Tensor) -> torch.Tensor:
    """KernOrth distance ``||G - I||_F`` (Frobenius norm, not squared; docs/method.md#baselines).

    ``weight`` is flattened to ``[N, rest]``; ``G`` is the smaller of ``W W^T`` and ``W^T W``, so a
    wide matrix is pushed towards orthonormal rows and a tall one towards orthonormal columns.
    """
    mat = weight.flatten(1)
    if mat.shape[0] < mat.shape[1]:
        mat = mat.t()
    gram = mat.t() @ mat
    eye = torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype)
    return torch.linalg.matrix_norm(gram - eye)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def deconv_orth_dist(
    kernel: torch.Tensor, stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0, groups: int = 1
) -> torch.Tensor:
    """OrthConv distance ``||conv2d(K, K, stride, padding) - I_r0||_F`` (docs/method.md#baselines).

    ``conv2d(K, K)`` treats the ``o`` filters of ``K [o, i, kh, kw]`` as a batch: output entry
    ``[a, b, y, x]`` is the inner product of filters ``a`` and ``b`` at the spatial shift
    ``(stride*y - padding, stride*x - padding)``. The target ``I_r0`` is the identity at the centre
    (shift 0) and zero elsewhere. With ``groups > 1`` only filters of the same group share inputs, so
    the distance is taken per group (block-diagonal), combined as one Frobenius norm.
    """
    if groups > 1:
        per_group = [deconv_orth_dist(k, stride, padding) for k in kernel.chunk(groups, dim=0)]
        return torch.stack(per_group).square().sum().sqrt()
    out = F.conv2d(kernel, kernel, stride=_pair(stride), padding=_pair(padding))
    target = torch.zeros_like(out)
    cy, cx = out.shape[-2] // 2, out.shape[-1] // 2
    target[:, :, cy, cx] = torch.eye(out.shape[0], device=out.device, dtype=out.dtype)
    return torch.linalg.matrix_norm((out - target).flatten(1))


def orthconv_geometry(conv: nn.Conv2d, official_stride2: bool = False) -> tuple[tuple[int, int], tuple[int, int]]:
    """Stride and padding of the self-convolution that expresses ``conv``'s orthogonality.

    OCNN's condition is ``Conv(K, K, stride=S, padding=P) = I_r0`` with ``S`` the layer's stride and
    ``P = floor((k - 1) / S) * S``: every shift ``-P..P`` in steps of ``S`` at which two (strided)
    rows of the conv operator overlap is evaluated, and ``P`` is a multiple of ``S`` so that shift 0
    lands on the centre of the output. (``P = k - 1`` would be the full correlation for ``S = 1`` but
    for e.g. ``k = 4, S = 2`` gives odd shifts only, never the diagonal.) The official TPP code
    hard-codes ``stride=2, padding=1`` for every layer (docs/method.md#official-code): for a 3x3 kernel this evaluates
    shifts ``{-1, 1}`` only and puts the identity target at shift ``(1, 1)``;
    ``official_stride2=True`` reproduces it.
    """
    if official_stride2:
        return (2, 2), (1, 1)
    strides, kernel = _pair(conv.stride), _pair(conv.kernel_size)
    padding = tuple(((k - 1) // s) * s for k, s in zip(kernel, strides))
    return strides, padding  # type: ignore[return-value]


def _is_pointwise(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Linear) or tuple(layer.weight.shape[-2:]) == (1, 1)


def _zero(layers: Sequence[nn.Module]) -> torch.Tensor:
    for layer in layers:
        return torch.zeros((), device=layer.weight.device, dtype=layer.weight.dtype)
    return torch.zeros(())


def kernel_orthogonality(model_or_layers: nn.Module | Sequence[nn.Module]) -> torch.Tensor:
    """KernOrth loss: ``sum orth_dist(W)`` over every Conv2d/Linear, first layer included (docs/method.md#baselines,
    ``--orth_reg_method CVPR17``)."""
    layers = orth_layers(model_or_layers)
    total = _zero(layers)
    for layer in layers:
        total = total + orth_dist(layer.weight)
    return total


def conv_orthogonality(
    model_or_layers: nn.Module | Sequence[nn.Module], official_stride2: bool = False
) -> torch.Tensor:
    """OrthConv loss (docs/method.md#baselines, ``--orth_reg_method CVPR20``): the first layer is skipped;
    ``orth_dist`` for Linear and 1x1 convs, :func:`deconv_orth_dist` with :func:`orthconv_geometry`
    for larger kernels."""
    layers = orth_layers(model_or_layers)
    total = _zero(layers)
    for layer in layers[1:]:
        if _is_pointwise(layer):
            total = total + orth_dist(layer.weight)
        else:
            stride, padding = orthconv_geometry(layer, official_stride2)
            total = total + deconv_orth_dist(layer.weight, stride, padding, groups=layer.groups)
    return total


def activation_gain(model: nn.Module) -> float:
    """OrthP's gain: 1 for linear networks (model name contains ``"linear"``), ``sqrt(2)`` otherwise.

    The official code sets ``--activation linear`` when the architecture name contains "linear" and
    defaults to ReLU (docs/method.md#baselines); here the name comes from ``model.tpp_spec`` (class name as fallback).
    """
    bare = unwrap(model)
    spec = getattr(bare, "tpp_spec", None)
    name = spec.get("name", "") if isinstance(spec, dict) else type(bare).__name__
    return 1.0 if "linear" in str(name).lower() else math.sqrt(2.0)


@torch.no_grad()
def orthogonalize_(model_or_layers: nn.Module | Sequence[nn.Module], gain: float = 1.0) -> None:
    """OrthP: replace every Conv2d/Linear weight by ``gain`` x the orthogonal QR factor, in place.

    The weight is flattened to ``rows x cols`` and transposed if ``rows < cols``; ``q`` of the reduced
    QR is made unique by ``q *= sign(diag(r))``, transposed back and reshaped (docs/method.md#baselines). Biases and
    BatchNorm are untouched; first and last layers are included. In a linear MLP this makes every layer
    (semi-)orthogonal, so all input-output Jacobian singular values become exactly 1 (paper Fig. 2).
    """
    for layer in orth_layers(model_or_layers):
        weight = layer.weight
        mat = weight.detach().flatten(1).double()  # QR in float64: the isometry must hold to ~1e-6
        wide = mat.shape[0] < mat.shape[1]
        if wide:
            mat = mat.t()
        q, r = torch.linalg.qr(mat)
        signs = torch.sign(torch.diagonal(r))
        # an exactly-zero pivot would zero a column of q (official: sign 0); use +1 to stay orthogonal
        signs = torch.where(signs == 0, torch.ones_like(signs), signs)
        q = q * signs
        if wide:
            q = q.t()
        weight.copy_((gain * q).reshape(weight.shape).to(weight.dtype))
