"""Model zoo: the paper's architectures behind a timm-style name registry.

>>> from tpp.models import create_model, example_inputs
>>> model = create_model("resnet56", num_classes=10)
>>> model(example_inputs("resnet56", batch_size=2)).shape
torch.Size([2, 10])

Models of other libraries and your own factories are built from a spec string by
:func:`build_model` (``timm:NAME``, ``torchvision:NAME``, ``hf:CLASS_OR_DIR``,
``package.module:function``; see :mod:`tpp.models.specs`), and rebuilt from their recorded
``tpp_spec`` by :func:`model_from_record`.
"""

from __future__ import annotations

import importlib

from tpp.models.layers import ChannelPadShortcut
from tpp.models.official import OFFICIAL_ARCHS, load_official
from tpp.models.registry import create_model, example_inputs, list_models, model_image_size, register_model
from tpp.models.specs import build_model, model_from_record, spec_label
from tpp.models.weights import load_weights, read_weights

# importing the family modules registers their models (one file per family, as in timm)
for _family in ("mlp", "resnet_cifar", "resnet_imagenet", "vgg"):
    importlib.import_module(f"tpp.models.{_family}")

__all__ = [
    "ChannelPadShortcut",
    "OFFICIAL_ARCHS",
    "build_model",
    "create_model",
    "example_inputs",
    "list_models",
    "load_official",
    "load_weights",
    "model_from_record",
    "model_image_size",
    "read_weights",
    "register_model",
    "spec_label",
]
