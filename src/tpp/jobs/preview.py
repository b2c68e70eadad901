"""What a pruning job would remove, found without training (``tpp prune --dry-run``)."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from tpp.metrics.counting import count
from tpp.jobs.prune_job import PruneJobConfig, _choice_options, _describe, _pruner_options
from tpp.pruning.registry import get_method
from tpp.util.modules import unwrap


def preview_prune_job(model: nn.Module, example_inputs: torch.Tensor, config: PruneJobConfig) -> dict[str, Any]:
    """What the job would remove, without training: the method's pruner is built on a copy of
    ``model`` (so the ratio, patterns and options are checked) and its selection removed at once.

    Returns:
        ``{"removes"`` (e.g. "50 channels in 6 units"), ``"counts_before", "counts_after", "speedup"}``.
    """
    config.check()
    method = get_method(config.method)
    probe = copy.deepcopy(unwrap(model))
    pruner = method.make_pruner(probe, example_inputs, ratio=config.ratio, scope=config.scope,
                                global_ratio=config.global_ratio, **_choice_options(None, config),
                                **_pruner_options(config, method))
    removes = _describe(pruner)
    before, after = count(probe, example_inputs), count(pruner.prune(), example_inputs)
    return {"removes": removes, "counts_before": before.as_dict(),
            "counts_after": after.as_dict(), "speedup": after.speedup_over(before)}
