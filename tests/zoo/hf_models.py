"""Tiny ``transformers`` vision classifiers built from configs with random weights (no download).

Each factory returns a fresh ``*ForImageClassification`` model; widths, depths and image sizes are
cut to the smallest the architecture accepts, so a whole case runs in about a second on one core.
"""

from __future__ import annotations

from tests.zoo.spec import ModelSpec

NUM_LABELS = 10


def _hf(class_name: str, config_name: str, **config):
    """A factory building ``transformers.<class_name>(<config_name>(**config))``."""

    def build():
        import transformers

        cfg = getattr(transformers, config_name)(num_labels=NUM_LABELS, **config)
        return getattr(transformers, class_name)(cfg)

    return build


# name -> (model class, config class, config, image size, dict inputs?)
_TABLE = {
    "resnet": (
        "ResNetForImageClassification",
        "ResNetConfig",
        dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"),
        32,
        False,
    ),
    "resnet-bottleneck": (
        "ResNetForImageClassification",
        "ResNetConfig",
        dict(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1], layer_type="bottleneck"),
        32,
        True,
    ),
    "convnext": (
        "ConvNextForImageClassification",
        "ConvNextConfig",
        dict(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2),
        32,
        False,
    ),
    "convnextv2": (
        "ConvNextV2ForImageClassification",
        "ConvNextV2Config",
        dict(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2),
        32,
        True,
    ),
    "mobilenet_v1": (
        "MobileNetV1ForImageClassification",
        "MobileNetV1Config",
        dict(depth_multiplier=0.25, min_depth=8, image_size=32),
        32,
        False,
    ),
    "mobilenet_v2": (
        "MobileNetV2ForImageClassification",
        "MobileNetV2Config",
        dict(depth_multiplier=0.25, min_depth=8, image_size=32),
        32,
        True,
    ),
    "regnet": (
        "RegNetForImageClassification",
        "RegNetConfig",
        dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], groups_width=8, layer_type="y"),
        32,
        False,
    ),
    "efficientnet": (
        "EfficientNetForImageClassification",
        "EfficientNetConfig",
        dict(image_size=32, width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320),
        32,
        False,
    ),
    "swin": (
        "SwinForImageClassification",
        "SwinConfig",
        dict(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[2, 2], window_size=4),
        32,
        True,
    ),
    "vit": (
        "ViTForImageClassification",
        "ViTConfig",
        dict(
            image_size=32,
            patch_size=8,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
        ),
        32,
        False,
    ),
    "deit": (
        "DeiTForImageClassification",
        "DeiTConfig",
        dict(
            image_size=32,
            patch_size=8,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
        ),
        32,
        True,
    ),
    "poolformer": (
        "PoolFormerForImageClassification",
        "PoolFormerConfig",
        dict(
            hidden_sizes=[8, 16],
            depths=[1, 1],
            num_encoder_blocks=2,
            patch_sizes=[7, 3],
            strides=[4, 2],
            padding=[2, 1],
        ),
        32,
        False,
    ),
    "levit": (
        "LevitForImageClassification",
        "LevitConfig",
        dict(
            image_size=64,
            hidden_sizes=[16, 24],
            num_attention_heads=[1, 2],
            depths=[1, 1],
            key_dim=[8, 8],
            mlp_ratio=[2, 2],
            attention_ratio=[2, 2],
            down_ops=[["Subsample", 8, 16 // 8, 4, 2, 2]],
        ),
        64,
        False,
    ),
    "mobilevit": (
        "MobileViTForImageClassification",
        "MobileViTConfig",
        dict(
            image_size=32,
            hidden_sizes=[16, 16, 16],
            neck_hidden_sizes=[8, 8, 8, 8, 8, 8, 16],
            num_attention_heads=2,
            mlp_ratio=2.0,
        ),
        32,
        True,
    ),
    "bit": (
        "BitForImageClassification",
        "BitConfig",
        dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_groups=4),
        32,
        False,
    ),
    "dinov2": (
        "Dinov2ForImageClassification",
        "Dinov2Config",
        dict(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2),
        32,
        False,
    ),
    "cvt": (
        "CvtForImageClassification",
        "CvtConfig",
        dict(
            embed_dim=[8, 16],
            num_heads=[1, 2],
            depth=[1, 2],
            patch_sizes=[7, 3],
            patch_stride=[4, 2],
            patch_padding=[2, 1],
            mlp_ratio=[2.0, 2.0],
            attention_drop_rate=[0.0, 0.0],
            drop_rate=[0.0, 0.0],
            drop_path_rate=[0.0, 0.0],
            qkv_bias=[True, True],
            cls_token=[False, True],
            padding_q=[1, 1],
            padding_kv=[1, 1],
            kernel_qkv=[3, 3],
            stride_kv=[2, 2],
            stride_q=[1, 1],
            qkv_projection_method=["dw_bn", "dw_bn"],
        ),
        32,
        False,
    ),
    "focalnet": (
        "FocalNetForImageClassification",
        "FocalNetConfig",
        dict(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], focal_levels=[2, 2], focal_windows=[3, 3]),
        32,
        False,
    ),
}

# Architectures no channel of which can be removed exactly: they must be refused when the pruner is built.
IMPOSSIBLE = {
    "convnextv2": "GRN divides every channel by the mean of all channels' norms, so a zeroed channel still counts",
    "bit": "GroupNorm statistics span groups of channels, and weight-standardised convolutions normalise "
    "each filter over all its input channels",
}

SPECS = {
    name: ModelSpec(name, _hf(cls, cfg, **config), image, dict_inputs=as_dict)
    for name, (cls, cfg, config, image, as_dict) in _TABLE.items()
}
