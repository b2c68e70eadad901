"""TPP's penalties, vectorised: index tensors and masks are built once, no step runs a per-index loop.

* :class:`GramPenalty`: the gram-matrix penalty that de-correlates pruned filters from kept ones
  (paper Eq. 3; docs/method.md#gram-penalty). Per layer, the official code computes
  ``mean((W W^T - T)^2)`` with ``T`` the detached gram whose pruned rows and columns are 0: kept-kept
  entries have zero residual, so this is ``||(W W^T) ⊙ (1 - k k^T)||^2 / N^2`` (``k``: kept indicator).
  Only the entries with a pruned index count, so it is computed from the pruned rows alone:
  ``(2 ||W_p W^T||^2 - ||W_p W_p^T||^2) / N^2``, with a closed-form backward (:class:`_PrunedGram`).
  That costs ``p (3N - p) K`` multiply-adds per layer and step instead of the ``3 N^2 K`` of building,
  masking and differentiating the full gram (``p`` pruned of ``N`` filters, ``K`` weights each). Where
  filters are short (``K`` below about ``p``, e.g. a transformer MLP's ``fc1``), the same value comes
  from the ``K x K`` grams ``A = W^T W`` and ``A_p = W_p^T W_p``: ``||W_p W^T||^2 = <A_p, A>``, so the
  term is ``(2 <A_p, A> - ||A_p||^2) / N^2`` with gradient ``W_k A_p`` on kept rows and ``W_p A`` on
  pruned ones, ``(2N + p) K^2`` multiply-adds; the cheaper form is used.
* :class:`SelectedParameters`: the growing L2 of Eq. (5) and GReg, applied through gradients
  (docs/method.md#growing-l2), and the zero-out of the stabilisation phase (docs/method.md#schedule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

GRAM_TARGETS = ("decorrelate", "kernorth")


class _PrunedGram(torch.autograd.Function):
    """``||(W W^T) ⊙ (1 - k k^T)||^2 / N^2`` from the pruned rows, with its gradient in closed form.

    With ``G = W W^T`` and ``S`` the entries that have a pruned index, the gradient is
    ``(4 / N^2) (G ⊙ S) W``: for a pruned row ``i`` it is ``G_i W``, for a kept row ``i`` it is
    ``sum_{j pruned} G_ij W_j``. Everything comes from ``G_p = W_p W^T`` (``p x N``), or, when filters
    are short, from ``A = W^T W`` and ``A_p = W_p^T W_p`` (``K x K``; ``G_i W = W_i A`` and
    ``sum_{j pruned} G_ij W_j = W_i A_p``), so neither the full gram nor an autograd graph of it is
    ever built."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, pruned: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        rows = weight.flatten(1)
        n, k = rows.shape
        p = pruned.numel()
        pruned_rows = rows.index_select(0, pruned)
        ctx.by_columns = k * (2 * n + p) < p * (3 * n - p)  # the cheaper of the two forms (module docstring)
        if ctx.by_columns:
            gram_all = rows.t() @ rows  # A = W^T W, K x K
            gram_p = pruned_rows.t() @ pruned_rows  # A_p
            value = (2.0 * (gram_p * gram_all).sum() - gram_p.square().sum()) / n**2
            ctx.save_for_backward(rows, pruned_rows, gram_all, gram_p, pruned, kept)
        else:
            gram_p = pruned_rows @ rows.t()  # [p, N]: every gram entry in a pruned row (and, by symmetry, column)
            value = (2.0 * gram_p.square().sum() - gram_p.index_select(1, pruned).square().sum()) / n**2
            ctx.save_for_backward(rows, pruned_rows, gram_p, pruned, kept)
        ctx.weight_shape = weight.shape
        return value

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        if ctx.by_columns:
            rows, pruned_rows, gram_all, gram_p, pruned, kept = ctx.saved_tensors
            scale = grad_output * (4.0 / rows.shape[0] ** 2)
            grad = torch.empty_like(rows)
            grad.index_copy_(0, pruned, (pruned_rows @ gram_all) * scale)
            grad.index_copy_(0, kept, (rows.index_select(0, kept) @ gram_p) * scale)
            return grad.view(ctx.weight_shape), None, None
        rows, pruned_rows, gram_p, pruned, kept = ctx.saved_tensors
        scale = grad_output * (4.0 / rows.shape[0] ** 2)
        grad = torch.empty_like(rows)
        grad.index_copy_(0, pruned, (gram_p @ rows) * scale)
        grad.index_copy_(0, kept, (gram_p.index_select(1, kept).t() @ pruned_rows) * scale)
        return grad.view(ctx.weight_shape), None, None


@dataclass
class _GramLayer:
    weight: nn.Parameter
    dim: int  # the dimension of the weight that holds the filters (1 for transformers' Conv1D)
    pruned: torch.Tensor  # pruned row indices
    kept: torch.Tensor  # kept row indices
    target: torch.Tensor | None  # kernorth: the constant target diag(kept); decorrelate: None


class GramPenalty:
    """Sum over layers of the gram penalty.

    ``target="decorrelate"`` is TPP (gram-target panel c): only entries that involve a pruned filter
    are pushed to 0 (computed from the pruned rows, see the module docstring). ``target="kernorth"`` is
    the ablation "kernel orthogonality for pruning" (panel b): ``W W^T`` is pushed to ``diag(kept)`` on
    every entry, ``mean((W W^T - diag(kept))^2)``.
    """

    def __init__(self, layers: Sequence[tuple], target: str = "decorrelate"):
        if target not in GRAM_TARGETS:
            raise ValueError(f"unknown gram target {target!r}; choose from {GRAM_TARGETS}")
        self.target = target
        # (module, pruned rows[, dim of the filters]) with at least one pruned row
        self._specs = [(s[0], s[1], s[2] if len(s) > 2 else 0) for s in layers if len(s[1]) > 0]
        self._layers: list[_GramLayer] = []
        self._device: torch.device | None = None

    def _build(self, device: torch.device) -> None:
        self._layers = []
        for module, pruned_rows, dim in self._specs:
            n = module.weight.shape[dim]
            is_kept = torch.ones(n, dtype=torch.bool)
            is_kept[pruned_rows] = False
            pruned = (~is_kept).nonzero().flatten().to(device)
            kept = is_kept.nonzero().flatten().to(device)
            target = torch.diag(is_kept.float()).to(device) if self.target == "kernorth" else None
            self._layers.append(_GramLayer(module.weight, dim, pruned, kept, target))
        self._device = device

    def __call__(self) -> torch.Tensor:
        if not self._specs:
            return torch.zeros(())
        device = self._specs[0][0].weight.device
        if device != self._device:
            self._build(device)
        total = None
        for layer in self._layers:
            if layer.target is None:
                # the regulariser runs in the weights' precision, also under autocast (bf16 grams lose it)
                with torch.autocast(device_type=device.type, enabled=False):
                    term = _PrunedGram.apply(_rows_first(layer), layer.pruned, layer.kept)
            else:
                rows = _rows_first(layer).flatten(1)
                gram = rows @ rows.t()
                term = (gram - layer.target.to(gram.dtype)).square().mean()
            total = term if total is None else total + term
        return total


def _rows_first(layer: _GramLayer) -> torch.Tensor:
    """The weight as ``[filters, ...]``: a transposed view for a layer that stores ``[in, out]``."""
    return layer.weight.movedim(layer.dim, 0) if layer.dim else layer.weight


class SelectedParameters:
    """Slices of parameters selected by index along one dimension (dim 0 unless given), handled in bulk
    with ``_foreach`` ops.

    ``selections`` holds ``(param, indices)`` or ``(param, indices, dim)``; missing parameters (None)
    and empty selections are dropped.
    """

    def __init__(self, selections: Sequence[tuple]):
        self._specs = [
            (s[0], s[1], s[2] if len(s) > 2 else 0) for s in selections if s[0] is not None and len(s[1]) > 0
        ]
        self._device: torch.device | None = None
        self._masks: list[torch.Tensor] = []  # 1 on selected slices, shaped to broadcast over the parameter
        self._keep: list[torch.Tensor] = []  # 1 - mask

    def __len__(self) -> int:
        return len(self._specs)

    def _build(self, device: torch.device) -> None:
        self._masks, self._keep = [], []
        for param, rows, dim in self._specs:
            shape = [1] * param.dim()
            shape[dim] = param.shape[dim]
            mask = torch.zeros(shape, device=device, dtype=param.dtype)
            mask.index_fill_(dim, rows.to(device), 1.0)
            self._masks.append(mask)
            self._keep.append(1.0 - mask)
        self._device = device

    def _ready(self) -> bool:
        if not self._specs:
            return False
        device = self._specs[0][0].device
        if device != self._device:
            self._build(device)
        return True

    @torch.no_grad()
    def add_l2_gradient(self, strength: float) -> None:
        """``grad += strength * param`` on the selected rows: the gradient of ``strength/2 * ||rows||^2``."""
        if strength == 0 or not self._ready():
            return
        grads, params, masks = [], [], []
        for (param, _, _), mask in zip(self._specs, self._masks):
            if param.grad is not None:
                grads.append(param.grad)
                params.append(param.detach())
                masks.append(mask)
        if grads:
            scaled = torch._foreach_mul(params, masks)
            torch._foreach_add_(grads, scaled, alpha=strength)

    @torch.no_grad()
    def zero_(self) -> None:
        """Set the selected rows to exactly 0."""
        if self._ready():
            torch._foreach_mul_([p.data for p, _, _ in self._specs], self._keep)
