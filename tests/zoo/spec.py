"""A zoo entry: how to build a model with random weights and the inputs it takes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

# Training-mode BatchNorm on the 1x1 maps of small images needs more than two samples per batch:
# with two, the running variance collapses and eval outputs overflow within a few steps.
BATCH = 8


@dataclass(frozen=True)
class ModelSpec:
    """One third-party architecture: ``build()`` gives a fresh model (seed it first)."""

    name: str
    build: Callable[[], nn.Module]
    image_size: int
    dict_inputs: bool = False  # feed ``{"pixel_values": x}`` instead of ``x``
    channels: int = 3

    def inputs(self):
        """A fixed batch of images, as a tensor or as a ``transformers``-style dict."""
        g = torch.Generator().manual_seed(1234)
        x = torch.randn(BATCH, self.channels, self.image_size, self.image_size, generator=g)
        return {"pixel_values": x} if self.dict_inputs else x
