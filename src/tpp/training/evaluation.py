"""Test-set evaluation: top-1/top-5 accuracy (percent) and mean cross-entropy."""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from tpp.errors import DataError
from tpp.util.inputs import logits_of


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[torch.Tensor]:
    """Number of samples whose target is among the top-``k`` logits, for each ``k``.

    ``k`` is capped at the number of classes, so top-5 on a 2-class problem is top-2 (= 100%).
    Returned as 0-dim tensors so callers can accumulate without a device sync per batch.
    """
    max_k = min(max(ks), logits.shape[1])
    top = logits.topk(max_k, dim=1).indices
    hits = top.eq(targets.view(-1, 1))
    return [hits[:, : min(k, max_k)].any(dim=1).sum() for k in ks]


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device | str | None = None) -> dict[str, float]:
    """Evaluate ``model`` on every batch of ``loader``.

    Runs in eval mode under ``no_grad`` and restores each module's previous train/eval mode.

    Returns:
        ``{"top1": %, "top5": %, "loss": mean cross-entropy, "samples": n}``; top-5 uses
        ``min(5, num_classes)``.

    Raises:
        DataError: the loader yields no samples.
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    modes = {module: module.training for module in model.modules()}
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    correct1 = torch.zeros((), dtype=torch.int64, device=device)
    correct5 = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    try:
        for inputs, targets in loader:
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            logits = logits_of(model(inputs))
            total += F.cross_entropy(logits, targets, reduction="sum").double()
            hit1, hit5 = topk_correct(logits, targets, (1, 5))
            correct1 += hit1
            correct5 += hit5
            count += targets.shape[0]
    finally:
        for module, training in modes.items():
            module.training = training
    if count == 0:
        raise DataError("the test loader yielded no samples; check the dataset and --test-batch-size")
    return {
        "top1": 100.0 * correct1.item() / count,
        "top5": 100.0 * correct5.item() / count,
        "loss": total.item() / count,
        "samples": count,
    }
