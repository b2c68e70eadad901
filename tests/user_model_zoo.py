"""Model factories of the kind users pass as ``--model package.module:function`` (tests only),
a writer of small real-image folders, and the CLI helpers the user-model tests share."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

FACTORY = "tests.user_model_zoo:small_cnn"


def data_args(root: Path, *extra: str) -> list[str]:
    """Options reading the digit folder as 1-channel 32x32 images with MNIST normalisation."""
    return [
        "--dataset",
        "imagefolder",
        "--data-dir",
        str(root),
        "--channels",
        "1",
        "--image-size",
        "32",
        "--normalize",
        "mnist",
        *extra,
    ]


def top1(text: str) -> float:
    """The first 'top-1 N%' figure in a command's output."""
    return float(re.search(r"top-1 ([0-9.]+)%", text).group(1))


def one_line_error(result, *needles: str) -> str:
    """Assert a CLI result is exit 2 with one stderr line holding every needle."""
    assert result.code == 2 and len(result.err_lines) == 1, result.err
    for needle in needles:
        assert needle in result.err, result.err
    return result.err


def small_cnn(num_classes: int = 10, in_channels: int = 3, width: int = 16) -> nn.Module:
    """conv-bn-relu x2 with pooling, global average pool, linear: prunable, trains in seconds."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
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


def write_png_folder(
    root: Path, images: np.ndarray, labels: np.ndarray, split: str, per_class: int, classes: list[str] | None = None
) -> None:
    """Write the first ``per_class`` images of every label as ``root/split/<class>/<i>.png``."""
    from PIL import Image

    names = classes or [f"digit_{k}" for k in range(int(labels.max()) + 1)]
    for label, name in enumerate(names):
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(labels == label)[:per_class]:
            Image.fromarray(images[i]).save(folder / f"{i:05d}.png")
