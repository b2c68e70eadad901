"""``timm`` classifiers with random weights (``pretrained=False``: nothing is downloaded).

Ten families the zoo must cover, plus a few cheap extras; the smallest variant of each, on small
images where the architecture allows (inputs under the stem's total stride end in a 1x1 map).
"""

from __future__ import annotations

from tests.zoo.spec import ModelSpec

NUM_CLASSES = 10


def _timm(name: str, **kwargs):
    """A factory building ``timm.create_model(name, pretrained=False, **kwargs)``."""

    def build():
        import timm

        return timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES, **kwargs)

    return build


# zoo name -> (timm model name, extra constructor arguments, image size)
_TABLE = {
    "resnet10t": ("resnet10t", {}, 32),
    "resnet18": ("resnet18", {}, 32),
    "mobilenetv3_small_050": ("mobilenetv3_small_050", {}, 32),
    "efficientnet_b0": ("efficientnet_b0", {}, 32),
    "convnext_atto": ("convnext_atto", {}, 32),
    "regnetx_002": ("regnetx_002", {}, 32),
    "regnety_002": ("regnety_002", {}, 32),
    "densenet121-small": ("densenet121", dict(growth_rate=8, block_config=(2, 2, 2, 2)), 32),
    "ghostnet_050": ("ghostnet_050", {}, 32),
    "vit_tiny": ("vit_tiny_patch16_224", dict(img_size=32, patch_size=8, depth=2), 32),
    "mixnet_s": ("mixnet_s", {}, 32),
    "rexnet_100": ("rexnet_100", {}, 32),
    "mobilevit_xxs": ("mobilevit_xxs", {}, 64),
    "repvgg_a0": ("repvgg_a0", {}, 32),
}

# Cases where no channel can be removed exactly: they must be refused when the pruner is built.
IMPOSSIBLE = {
    "repvgg_a0/internal": "every convolution's output joins a branch sum, so no channel is internal to a block"
}

SPECS = {
    name: ModelSpec(name, _timm(timm_name, **kwargs), image) for name, (timm_name, kwargs, image) in _TABLE.items()
}
