"""Test-set evaluation: top-1/top-5 accuracy (percent) and mean cross-entropy; for language models
(``[B, T, V]`` logits of the next token) also perplexity and bits per byte."""

from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from tpp.errors import DataError
from tpp.util.inputs import call_without_cache, logits_of


def flat_predictions(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, targets)`` as ``[N, K]`` and ``[N]``: a causal language model's ``[B, T, V]`` logits with
    ``[B, T]`` next-token targets are ``B * T`` classification problems (the causal-LM loss is their
    mean cross-entropy); classifier outputs pass through unchanged."""
    if logits.dim() == 3 and targets.dim() == 2:
        return logits.flatten(0, 1), targets.flatten()
    return logits, targets


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
        ``min(5, num_classes)``. For a language model (``[B, T, V]`` logits, ``[B, T]`` targets) the
        samples are tokens, top-1 is next-token accuracy, and ``"perplexity"`` (``exp(loss)``) is
        added, with ``"bits_per_byte"`` (``loss * tokens / (bytes * ln 2)``) when the loader knows
        its text's ``bytes_per_token``.

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
    count, sequences = 0, False
    try:
        for inputs, targets in loader:
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            sequences = sequences or targets.dim() == 2
            logits, targets = flat_predictions(logits_of(call_without_cache(model, inputs)), targets)
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
    result = {
        "top1": 100.0 * correct1.item() / count,
        "top5": 100.0 * correct5.item() / count,
        "loss": total.item() / count,
        "samples": count,
    }
    if sequences:
        result["perplexity"] = math.exp(min(result["loss"], 700.0))  # exp overflows past ~709
        bytes_per_token = getattr(loader, "bytes_per_token", None)
        if bytes_per_token:
            result["bits_per_byte"] = result["loss"] / (math.log(2) * float(bytes_per_token))
    return result
