"""A small residual CNN that today's core prunes exactly: the zoo harness's own test subject."""

from __future__ import annotations

import torch
from torch import nn

from tests.zoo.spec import ModelSpec


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))


class ResidualNet(nn.Module):
    """stem -> (conv, conv) + identity -> pool -> linear: one internal and one residual-coupled unit."""

    def __init__(self, width: int = 8, classes: int = 10):
        super().__init__()
        self.stem = _conv_bn(3, width)
        self.conv1 = _conv_bn(width, width)
        self.conv2 = _conv_bn(width, width)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.relu(x + self.conv2(torch.relu(self.conv1(x))))
        return self.head(x.mean((2, 3)))


SPECS = {"residual": ModelSpec("residual", ResidualNet, 16)}
