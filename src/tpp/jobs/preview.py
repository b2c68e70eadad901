"""What a pruning job would remove, found without training (``tpp prune --dry-run``)."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
import torch.nn as nn

from tpp.jobs.prune_job import PruneJobConfig, _choice_options, _describe
from tpp.jobs.stages import pruner_options
from tpp.metrics.counting import count
from tpp.pruning.presets import UNFINISHED_PRUNE_WARNING
from tpp.pruning.registry import get_method
from tpp.util.modules import unwrap


def preview_prune_job(model: nn.Module, example_inputs: torch.Tensor, config: PruneJobConfig) -> dict[str, Any]:
    """What the job would remove, without training: the method's pruner is built on a copy of
    ``model`` (so the ratio, patterns and options are checked) and its selection removed at once.

    Returns:
        ``{"removes"`` (e.g. "50 channels in 6 units"), ``"pruned"`` (channels removed per unit),
        ``"counts_before", "counts_after", "speedup"``, ``"iterations"`` (of the regularisation; 0 for
        one-shot methods) and ``"iterations_are_bound"`` (an adaptive schedule may end sooner)``}``.
    """
    config.check()
    method = get_method(config.method)
    probe = copy.deepcopy(unwrap(model))
    pruner = method.make_pruner(
        probe,
        example_inputs,
        ratio=config.ratio,
        scope=config.scope,
        global_ratio=config.global_ratio,
        **_choice_options(None, config),
        **pruner_options(config, method),
    )
    removes = _describe(pruner)
    iterations = int(pruner.total_iterations) if method.regularized else 0
    bounded = method.regularized and not getattr(pruner.schedule, "fixed_length", True)
    pruned = {str(name): len(indices) for name, indices in pruner.pruned_indices.items()}
    with warnings.catch_warnings():  # removing at once is the point here, not an unfinished regulariser
        warnings.filterwarnings("ignore", message=UNFINISHED_PRUNE_WARNING)
        before, after = count(probe, example_inputs), count(pruner.prune(), example_inputs)
    return {
        "removes": removes,
        "counts_before": before.as_dict(),
        "pruned": pruned,
        "counts_after": after.as_dict(),
        "speedup": after.speedup_over(before),
        "iterations": iterations,
        "iterations_are_bound": bounded,
    }


def measure_step_seconds(model: nn.Module, loader: Any, steps: int = 5) -> float:
    """Median seconds of one training step (forward, cross-entropy, backward) on ``loader``'s
    batches, timed on a copy of ``model`` after one warm-up step, so that the model itself (weights
    and BatchNorm statistics) is untouched. The regularisers' extra work is not included."""
    import statistics
    import time

    import torch.nn.functional as F

    from tpp.training.evaluation import flat_predictions
    from tpp.util.inputs import call_without_cache, logits_of

    probe = copy.deepcopy(unwrap(model)).train()
    device = next(probe.parameters()).device
    times: list[float] = []
    for index, (inputs, targets) in enumerate(loader):
        started = time.perf_counter()
        inputs, targets = inputs.to(device), targets.to(device)
        logits, targets = flat_predictions(logits_of(call_without_cache(probe, inputs)), targets)
        F.cross_entropy(logits, targets).backward()
        probe.zero_grad(set_to_none=True)
        if index > 0:  # the first step pays for allocation and kernel selection
            times.append(time.perf_counter() - started)
        if index >= steps:
            break
    return statistics.median(times) if times else 0.0
