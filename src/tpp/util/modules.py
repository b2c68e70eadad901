"""Helpers about ``nn.Module`` objects: unwrapping parallel wrappers, finding their device."""

from __future__ import annotations

import sys
import warnings

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``DataParallel`` / ``DistributedDataParallel`` wrappers (itself otherwise)."""
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def device_of(module: nn.Module) -> torch.device:
    """The device of the first parameter (or buffer) of ``module``; CPU for a stateless module."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def warn_caller(message: str, package: str = "tpp.pruning") -> None:
    """``warnings.warn`` attributed to the first caller outside ``package`` (the user's line), however
    deep inside the package the condition was found."""
    frame, level = sys._getframe(1), 2
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)
