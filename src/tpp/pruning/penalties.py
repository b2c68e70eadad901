"""TPP's regularisers, vectorised: every mask is built once, and no step runs a per-index loop.

* :class:`GramPenalty`: Eq. (3), the gram-matrix penalty that de-correlates pruned filters from kept
  ones (digest §2.4). Per layer ``mean((W W^T - T)^2)`` with ``T`` the detached gram whose pruned
  rows and columns are 0, which equals ``sum((W W^T ⊙ P)^2) / N^2`` with the fixed mask
  ``P = 1 - k k^T`` (``k``: kept-filter indicator): kept-kept entries have zero residual.
* :class:`SelectedParameters`: the growing L2 of Eq. (5) and GReg, applied through gradients
  (digest §2.6), and the zero-out of the stabilisation phase (§2.7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

GRAM_TARGETS = ("decorrelate", "kernorth")


@dataclass
class _GramLayer:
    weight: nn.Parameter
    mask: torch.Tensor  # [N, N] weights of the squared residual (already divided by N^2)
    target: torch.Tensor | None  # constant target (kernorth) or None (TPP: target = gram off the mask)


class GramPenalty:
    """Sum over layers of the masked gram residual.

    ``target="decorrelate"`` is TPP (gram-target panel c): only entries that involve a pruned filter
    are pushed to 0. ``target="kernorth"`` is the ablation "kernel orthogonality for pruning"
    (opp_scheme v5_2, panel b): ``W W^T`` is pushed to ``diag(kept)`` on every entry.
    """

    def __init__(self, layers: Sequence[tuple[nn.Module, torch.Tensor]], target: str = "decorrelate"):
        if target not in GRAM_TARGETS:
            raise ValueError(f"unknown gram target {target!r}; choose from {GRAM_TARGETS}")
        self.target = target
        self._specs = [(module, pruned_rows) for module, pruned_rows in layers]
        self._layers: list[_GramLayer] = []
        self._device: torch.device | None = None

    def _build(self, device: torch.device) -> None:
        self._layers = []
        for module, pruned_rows in self._specs:
            n = module.weight.shape[0]
            kept = torch.ones(n, device=device)
            kept[pruned_rows.to(device)] = 0.0
            if self.target == "decorrelate":
                mask = (1.0 - torch.outer(kept, kept)) / (n * n)
                target = None
            else:
                mask = torch.full((n, n), 1.0 / (n * n), device=device)
                target = torch.diag(kept)
            self._layers.append(_GramLayer(module.weight, mask, target))
        self._device = device

    def __call__(self) -> torch.Tensor:
        if not self._specs:
            return torch.zeros(())
        device = self._specs[0][0].weight.device
        if device != self._device:
            self._build(device)
        total = None
        for layer in self._layers:
            rows = layer.weight.flatten(1)
            gram = rows @ rows.t()
            residual = gram if layer.target is None else gram - layer.target.to(gram.dtype)
            term = (residual.square() * layer.mask).sum()
            total = term if total is None else total + term
        return total


class SelectedParameters:
    """Slices of parameters selected by index along one dimension (dim 0 unless given), handled in bulk
    with ``_foreach`` ops.

    ``selections`` holds ``(param, indices)`` or ``(param, indices, dim)``; missing parameters (None)
    and empty selections are dropped.
    """

    def __init__(self, selections: Sequence[tuple]):
        self._specs = [(s[0], s[1], s[2] if len(s) > 2 else 0) for s in selections if s[0] is not None and len(s[1]) > 0]
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
