"""Checkpoints in the official TPP code's format, written by the tests themselves.

The official ``main.py`` saves ``{"arch", "model": <whole nn.Module>, "state_dict", ...}``; the
classes here are written for the tests with the official attribute names, in a throwaway module
that is removed from ``sys.modules``/``sys.path`` before tpp reads the files.
"""

from __future__ import annotations

import contextlib
import sys
import textwrap
import uuid
from pathlib import Path

import torch
from torch import nn

# Written for this test (same attribute names as the official model files, so the pickles carry
# the same state layout): CIFAR ResNet with option-A zero-padding or option-B shortcuts under
# `downsample`, VGG19-BN (`features`, `classifier`), and the MLP (`net` with activations interleaved).
OFFICIAL_SOURCE = textwrap.dedent("""
    import torch
    import torch.nn.functional as F
    from torch import nn


    class ZeroPaddingX2(nn.Module):
        def forward(self, x):
            half = x.shape[1] // 2
            return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, half))


    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride, option):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = nn.Sequential()
            if stride != 1 or cin != cout:
                self.downsample = ZeroPaddingX2() if option == "A" else nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            return F.relu(self.bn2(self.conv2(out)) + self.downsample(x))


    class ResNet(nn.Module):
        def __init__(self, blocks, num_classes=10, option="A"):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            cin = 16
            for i, (cout, stride) in enumerate([(16, 1), (32, 2), (64, 2)]):
                stage = []
                for j in range(blocks):
                    stage.append(BasicBlock(cin, cout, stride if j == 0 else 1, option))
                    cin = cout
                setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            self.linear = nn.Linear(64, num_classes)

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.layer3(self.layer2(self.layer1(out)))
            return self.linear(F.avg_pool2d(out, out.size(3)).flatten(1))


    class VGG(nn.Module):
        def __init__(self, num_classes=100):
            super().__init__()
            cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]
            layers, cin = [], 3
            for v in cfg:
                if v == "M":
                    layers.append(nn.MaxPool2d(2, 2))
                else:
                    layers += [nn.Conv2d(cin, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                    cin = v
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Linear(512, num_classes)

        def forward(self, x):
            x = self.features(x)
            return self.classifier(nn.AvgPool2d(x.size(3))(x).flatten(1))


    class FCNet(nn.Module):
        def __init__(self):
            super().__init__()
            layers = [nn.Linear(1024, 100), nn.Identity()]
            for _ in range(5):
                layers += [nn.Linear(100, 100), nn.Identity()]
            self.net = nn.Sequential(*layers, nn.Linear(100, 10))
            self.branch = nn.Sequential()

        def forward(self, x):
            return self.net(x.view(x.size(0), -1))
""")


@contextlib.contextmanager
def official_module(tmp_path: Path):
    """Import the throwaway module; on exit remove it from sys.modules and sys.path, so the
    classes its pickles name cannot be found while tpp reads them."""
    name = f"official_tpp_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "official_src"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(OFFICIAL_SOURCE)
    sys.path.insert(0, str(folder))
    try:
        yield __import__(name)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(name, None)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights *and* BN statistics, so a wrong mapping changes the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = (
                    torch.rand(tensor.shape, generator=gen) + 0.5
                    if "running_var" in key
                    else torch.randn(tensor.shape, generator=gen) * 0.2
                )
                tensor.copy_(values)
    return model.eval()


def save_official(model: nn.Module, path: Path, arch: str, *, zip_format: bool = True, **extra) -> Path:
    """As the official main.py saves: the whole module and its state_dict in one dict."""
    payload = {"arch": arch, "model": model, "state_dict": model.state_dict(), "ExpID": "SERVER-000000", **extra}
    torch.save(payload, path, _use_new_zipfile_serialization=zip_format)
    return path
