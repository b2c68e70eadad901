"""Model factories of the kind users pass as ``--model package.module:function`` (tests only),
and helpers that write small real-image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def small_cnn(num_classes: int = 10, in_channels: int = 3, width: int = 16) -> nn.Module:
    """conv-bn-relu x2 with pooling, global average pool, linear: prunable, trains in seconds."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes),
    )


class DictOutputNet(nn.Module):
    """Returns ``{"features": ..., "logits": ...}``, like models that return several tensors."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.body = small_cnn(num_classes, in_channels)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.body[:-1](x)
        return {"features": features, "logits": self.body[-1](features)}


def fixed_ten_classes() -> nn.Module:
    """A factory that takes no arguments (always 3-channel input, 10 classes)."""
    return small_cnn(10, 3)


def not_a_model(num_classes: int = 10) -> str:
    return "not a model"


def write_png_folder(root: Path, images: np.ndarray, labels: np.ndarray, split: str,
                     per_class: int, classes: list[str] | None = None) -> None:
    """Write the first ``per_class`` images of every label as ``root/split/<class>/<i>.png``."""
    from PIL import Image

    names = classes or [f"digit_{k}" for k in range(int(labels.max()) + 1)]
    for label, name in enumerate(names):
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(labels == label)[:per_class]:
            Image.fromarray(images[i]).save(folder / f"{i:05d}.png")
