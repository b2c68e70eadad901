"""The optimiser of the paper: SGD with momentum and (coupled, L2) weight decay on all parameters."""

from __future__ import annotations

import torch
from torch import nn

from tpp.errors import ConfigError

DEFAULT_MOMENTUM = 0.9
# the paper uses 5e-4 on CIFAR and 1e-4 on ImageNet
DEFAULT_WEIGHT_DECAY = 5e-4


def build_optimizer(
    model: nn.Module,
    lr: float,
    momentum: float = DEFAULT_MOMENTUM,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    nesterov: bool = False,
) -> torch.optim.SGD:
    """SGD over every trainable parameter of ``model`` (weight decay also on biases and BN, as
    in the official code).

    Raises:
        ConfigError: a negative learning rate, momentum or weight decay.
    """
    for name, value in (("learning rate", lr), ("momentum", momentum), ("weight decay", weight_decay)):
        if not value >= 0:  # also rejects NaN
            raise ConfigError(f"{name} must be >= 0, got {value}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters")
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
