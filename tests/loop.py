"""The pruner in a training loop, as the README shows it: one step, shared by the tests that train."""

from __future__ import annotations

from typing import Any

import torch


def pruner_step(pruner: Any, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> torch.Tensor:
    """``loss + pruner.penalty()``, backward, ``regularize()``, the optimizer step and ``pruner.step()``;
    returns the total loss."""
    total = loss + pruner.penalty()
    optimizer.zero_grad()
    total.backward()
    pruner.regularize()
    optimizer.step()
    pruner.step()
    return total
