"""How far the regularisation has got: pruned channels relative to kept ones, per unit.

The adaptive schedule (:class:`tpp.pruning.adaptive_schedule.AdaptiveSchedule`) ends the regularisation when
these numbers are small, and reports them; they are cheap (one pass over the unit's tensors).
"""

from __future__ import annotations

from typing import Sequence

import torch

from tpp.pruning.units import PruningUnit


@torch.no_grad()
def unit_progress(
    units: Sequence[PruningUnit], pruned_roots: dict[str, torch.Tensor]
) -> dict[int, tuple[float, float]]:
    """Per unit (keyed by ``unit.order``): ``(magnitude ratio, coupling)``.

    * magnitude ratio: the pruned channels' mean size over the kept ones' — filter+bias norms of each
      layer producing the channels, ``|gamma| + |beta|`` of its BatchNorms, per-channel parameters —
      the largest over the unit's layers (GReg's criterion, inverted: GReg stops at kept/pruned 1000);
    * coupling: ``||W_p W_k^T||_F / ||W_k W_k^T||_F``, the gram entries TPP's Eq. 3 penalises relative
      to the kept filters' own gram, the largest over the unit's layers.
    """
    result = {}
    for unit in units:
        roots = pruned_roots[unit.name]
        ratios, couplings = [], []
        for member in unit.rows:
            rows = member.module.weight.detach().movedim(member.dim, 0).flatten(1).float()
            bias = getattr(member.module, "bias", None)
            if bias is not None:
                rows = torch.cat([rows, bias.detach().float()[:, None]], 1)
            pruned, kept = _split(member.local_indices(roots), rows.shape[0], rows.device)
            norms = rows.norm(dim=1)
            ratios.append(_ratio(norms[pruned].mean(), norms[kept].mean()))
            kept_rows = rows[kept]
            couplings.append(
                _ratio(
                    torch.linalg.matrix_norm(rows[pruned] @ kept_rows.t()),
                    torch.linalg.matrix_norm(kept_rows @ kept_rows.t()),
                )
            )
        for member in unit.norms:
            tensors = [
                getattr(member.module, n) for n in ("weight", "bias") if getattr(member.module, n, None) is not None
            ]
            if tensors:
                scale = sum(t.detach().abs().float() for t in tensors)
                pruned, kept = _split(member.local_indices(roots), scale.shape[0], scale.device)
                ratios.append(_ratio(scale[pruned].mean(), scale[kept].mean()))
        for member in unit.params:
            values = member.module.detach().abs().float().movedim(member.dim, 0).flatten(1).mean(1)
            pruned, kept = _split(member.local_indices(roots), values.shape[0], values.device)
            ratios.append(_ratio(values[pruned].mean(), values[kept].mean()))
        result[unit.order] = (max(ratios, default=0.0), max(couplings, default=0.0))
    return result


def _split(pruned: torch.Tensor, size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    mask = torch.zeros(size, dtype=torch.bool, device=device)
    mask[pruned.to(device)] = True
    return mask, ~mask


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> float:
    return float(numerator) / max(float(denominator), 1e-12)
