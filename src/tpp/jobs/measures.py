"""What a prune job measures besides accuracy, and what it reads before choosing: the JSV right after
removal (images or language models), the calibrated importance, and the training steps it took."""

from __future__ import annotations

import itertools
from typing import Any, Iterable

import torch.nn as nn

from tpp.util.modules import unwrap


def measure_jsv(model: nn.Module, loader: Iterable, config: Any) -> dict[str, Any]:
    """Mean JSV etc. on the first ``jsv_batches`` training batches (the paper reads the train loader),
    in eval mode or, with ``jsv_mode="train"``, the paper's train mode (BatchNorm statistics restored).
    For a language model (batches of token ids): the JSV of its next-token logits with respect to the
    input embeddings (:mod:`tpp.metrics.language`).

    ``model`` must be the bare module: a DDP forward would wait for a parameter backward that
    the input-gradient computation never runs."""
    from tpp.metrics.jacobian import jacobian_singular_values
    from tpp.metrics.language import language_model_jsv, takes_token_ids

    batches = list(itertools.islice(iter(loader), config.jsv_batches))
    if batches and takes_token_ids(batches[0]):
        return language_model_jsv(model, batches, max_batches=len(batches)).as_dict()
    return jacobian_singular_values(
        model, batches, max_batches=max(len(batches), 1), train_mode=config.jsv_mode == "train"
    ).as_dict()


def calibrated_importance(model: nn.Module, loader: Iterable, config: Any) -> Any:
    """The importance that chooses the channels: None (L1, the pruner's default) or a data-driven one
    calibrated on the first ``calibration_batches`` training batches."""
    if config.importance == "l1":
        return None
    from tpp.pruning.calibration import make_importance

    if hasattr(loader, "set_epoch"):
        loader.set_epoch(0)  # the batches of the first epoch: the same on a resume
    batches = list(itertools.islice(iter(loader), config.calibration_batches))
    if config.importance == "activation":  # activations need the inputs only; taylor the (inputs, targets) pairs
        batches = [inputs for inputs, _ in batches]
    return make_importance(config.importance, unwrap(model), calibration=batches)


def train_steps(report: dict[str, Any], loader: Iterable) -> dict[str, int]:
    """Optimizer steps after the base model, per stage: what an equal-budget comparison equalises."""
    regularize = int((report.get("regularization") or {}).get("iterations") or 0)
    per_epoch = len(loader) if hasattr(loader, "__len__") else 0
    finetune = report["finetune"].get("steps")  # counted by the trainer; jobs from before it: whole epochs
    finetune = int(finetune) if isinstance(finetune, int) else int(report["finetune"]["epochs"]) * per_epoch
    return {"regularize": regularize, "finetune": finetune, "total": regularize + finetune}
