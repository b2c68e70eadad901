"""Randomly structured small CNNs for property tests: residual adds, concats, depthwise convs, widths."""

from __future__ import annotations

import torch
import torch.nn as nn


class ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, groups: int = 1, bn: bool = True, bias: bool = False):
        layers = [nn.Conv2d(cin, cout, 3, padding=1, groups=groups, bias=bias or not bn)]
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU())
        super().__init__(*layers)


class Residual(nn.Module):
    """x + f(x): the add couples f's last conv with whatever produced x."""

    def __init__(self, width: int, inner: int, bn: bool):
        super().__init__()
        self.conv1 = ConvBN(width, inner, bn=bn)
        self.conv2 = nn.Conv2d(inner, width, 3, padding=1, bias=not bn)
        self.bn2 = nn.BatchNorm2d(width) if bn else nn.Identity()

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(self.conv1(x))))


class Concat(nn.Module):
    """cat([a(x), b(x)]): consumers see shifted channel indices."""

    def __init__(self, width: int, left: int, right: int, bn: bool):
        super().__init__()
        self.left = ConvBN(width, left, bn=bn)
        self.right = ConvBN(width, right, bn=bn)
        self.out_channels = left + right

    def forward(self, x):
        return torch.cat([self.left(x), self.right(x)], dim=1)


class Depthwise(nn.Module):
    def __init__(self, width: int, bn: bool):
        super().__init__()
        self.dw = ConvBN(width, width, groups=width, bn=bn)

    def forward(self, x):
        return self.dw(x)


class RandomNet(nn.Module):
    """Stem, then a list of blocks described by ``(kind, a, b)`` tuples, then pool + linear."""

    def __init__(self, blocks: list[tuple[str, int, int]], stem: int, bn: bool = True, classes: int = 5):
        super().__init__()
        self.stem = ConvBN(3, stem, bn=bn)
        width = stem
        layers = []
        for kind, a, b in blocks:
            if kind == "conv":
                layers.append(ConvBN(width, a, bn=bn))
                width = a
            elif kind == "res":
                layers.append(Residual(width, a, bn=bn))
            elif kind == "cat":
                block = Concat(width, a, b, bn=bn)
                layers.append(block)
                width = block.out_channels
            elif kind == "dw":
                layers.append(Depthwise(width, bn=bn))
            elif kind == "pool":
                layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        x = self.body(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def randomise_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BN statistics and affine values, so zeroed channels are really tested."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5, generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.uniform_(-0.5, 0.5, generator=generator)
