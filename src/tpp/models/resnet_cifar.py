"""CIFAR ResNets (He et al. 2016, Sec. 4.2; layout as in akamaster/pytorch_resnet_cifar10).

Depth 6n+2 with n BasicBlocks per stage, widths 16/32/64. ``resnet{20,32,56,110}`` use the
parameter-free option-A shortcut (:class:`~tpp.models.layers.ChannelPadShortcut`), as the paper;
``*_b`` variants use a 1x1 conv + BN projection shortcut. Initialisation is PyTorch's default
(kaiming-uniform), which the TPP reference code keeps; BN starts at weight 1, bias 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tpp.models.layers import ChannelPadShortcut
from tpp.models.registry import register_model


def _conv3x3(in_planes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus shortcut, then ReLU."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "A") -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module
        if stride == 1 and in_planes == planes:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = ChannelPadShortcut(in_planes, planes, stride)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """Stem conv3x3(in_channels->16)-BN-ReLU, three stages, global average pool, ``linear``."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> None:
        super().__init__()
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        self.conv1 = _conv3x3(in_channels, 16)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for i, (planes, stride) in enumerate([(16, 1), (32, 2), (64, 2)]):
            blocks = []
            for j in range(blocks_per_stage):
                blocks.append(BasicBlock(in_planes, planes, stride if j == 0 else 1, shortcut))
                in_planes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(out)


def _register(depth: int) -> None:
    n = (depth - 2) // 6

    def build_a(num_classes: int = 10, in_channels: int = 3, **kwargs) -> ResNetCifar:
        return ResNetCifar(n, num_classes, in_channels, shortcut="A", **kwargs)

    def build_b(num_classes: int = 10, in_channels: int = 3, **kwargs) -> ResNetCifar:
        return ResNetCifar(n, num_classes, in_channels, shortcut="B", **kwargs)

    build_a.__doc__ = f"CIFAR ResNet-{depth} ({n} blocks/stage), option-A zero-padding shortcut."
    build_b.__doc__ = f"CIFAR ResNet-{depth} ({n} blocks/stage), 1x1 conv + BN projection shortcut."
    register_model(f"resnet{depth}", image_size=32)(build_a)
    register_model(f"resnet{depth}_b", image_size=32)(build_b)


for _depth in (20, 32, 56, 110):
    _register(_depth)
