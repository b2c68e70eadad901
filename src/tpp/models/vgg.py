"""VGG19-BN for CIFAR as used by TPP ("vgg19_C", after EigenDamage).

Sixteen conv3x3-BN-ReLU layers, max-pooling between stages but not after the last one, global
average pooling (2x2 -> 1x1 on 32x32 inputs) and a single ``Linear(512, num_classes)``.
"""

from __future__ import annotations

import torch
from torch import nn

from tpp.models.registry import register_model

_CFG_19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]


class VGG(nn.Module):
    """``features`` (Sequential of conv/BN/ReLU/MaxPool), ``avgpool``, ``classifier`` (Linear).

    Init: conv kaiming_normal (fan_out, relu), BN weight 1 bias 0, Linear N(0, 0.01) bias 0.
    ReLUs are not in-place so pruning tools can trace every activation.
    """

    def __init__(self, cfg: list, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=False)]
                channels = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register_model("vgg19_bn", image_size=32)
def vgg19_bn(num_classes: int = 10, in_channels: int = 3, **kwargs) -> VGG:
    """The paper's CIFAR VGG19 with BN (convs at ``features.0`` ... ``features.49``)."""
    return VGG(_CFG_19, num_classes, in_channels, **kwargs)
