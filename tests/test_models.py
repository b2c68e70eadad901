"""Tests of the model zoo (tpp.models): names, shapes, parameter counts, option-A shortcut."""

from __future__ import annotations

import fnmatch

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tpp.errors import ModelError
from tpp.models import ChannelPadShortcut, create_model, example_inputs, list_models, model_image_size, register_model

IMAGENET = ("resnet18", "resnet34", "resnet50")
CIFAR = [n for n in list_models() if n not in IMAGENET]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_list_models_contains_the_zoo():
    expected = {
        "mlp7_linear",
        "mlp7_relu",
        "vgg19_bn",
        *IMAGENET,
        *(f"resnet{d}{s}" for d in (20, 32, 56, 110) for s in ("", "_b")),
    }
    assert set(list_models()) == expected
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize(
    "name, num_classes, expected",
    [
        ("resnet20", 10, 269_722),
        ("resnet56", 10, 853_018),
        ("resnet110", 10, 1_727_962),
        ("resnet56_b", 10, 855_770),
        ("vgg19_bn", 100, 20_081_188),
        ("resnet18", 1000, 11_689_512),
        ("resnet34", 1000, 21_797_672),
        ("resnet50", 1000, 25_557_032),
    ],
)
def test_parameter_counts(name, num_classes, expected):
    assert n_params(create_model(name, num_classes=num_classes)) == expected


def test_parameter_counts_match_paper_rounding():
    assert round(n_params(create_model("resnet56")) / 1e6, 2) == 0.85
    assert round(n_params(create_model("resnet20")) / 1e6, 2) == 0.27
    assert round(n_params(create_model("resnet50", 1000)) / 1e6, 2) == 25.56
    assert round(n_params(create_model("vgg19_bn", 100)) / 1e6, 2) == 20.08


def test_mlp7_parameter_count_and_structure():
    model = create_model("mlp7_linear", num_classes=10, in_channels=1)
    assert n_params(model) == 1024 * 100 + 100 + 5 * (100 * 100 + 100) + 100 * 10 + 10
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert linears == [f"fc{i}" for i in range(1, 8)]
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Linear))
    assert not any(isinstance(m, (nn.ReLU, nn.BatchNorm1d, nn.Dropout)) for m in model.modules())
    relu = create_model("mlp7_relu", in_channels=1)
    assert sum(isinstance(m, nn.ReLU) for m in relu.modules()) == 6


def test_mlp7_linear_is_affine():
    torch.manual_seed(0)
    f = create_model("mlp7_linear").double()
    a, b = torch.randn(2, 3, 32, 32).double(), torch.randn(2, 3, 32, 32).double()
    zero = torch.zeros_like(a)
    torch.testing.assert_close(f(a + b), f(a) + f(b) - f(zero))
    g = create_model("mlp7_relu").double()
    assert not torch.allclose(g(a + b), g(a) + g(b) - g(zero))


@pytest.mark.parametrize("name", list_models())
def test_forward_shape(name):
    num_classes = 7
    model = create_model(name, num_classes=num_classes).eval()
    size = 64 if name in IMAGENET else None
    x = example_inputs(name, batch_size=2, image_size=size)
    assert x.shape == (2, 3, size or 32, size or 32)
    with torch.no_grad():
        assert model(x).shape == (2, num_classes)


@pytest.mark.parametrize("name", CIFAR)
def test_single_channel_input(name):
    model = create_model(name, num_classes=10, in_channels=1).eval()
    x = example_inputs(model, batch_size=2)
    assert x.shape == (2, 1, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (2, 10)


def test_image_sizes_and_example_inputs():
    assert model_image_size("resnet56") == 32
    assert model_image_size("mlp7_linear") == 32
    assert model_image_size("resnet50") == 224
    x = example_inputs("resnet56", batch_size=3)
    assert x.shape == (3, 3, 32, 32)
    torch.testing.assert_close(x, example_inputs("resnet56", batch_size=3))  # seeded
    assert x.std() > 0.5  # random, not zeros


def test_tpp_spec_rebuilds_model():
    model = create_model("mlp7_relu", num_classes=5, in_channels=1, width=32)
    assert model.tpp_spec == {"name": "mlp7_relu", "num_classes": 5, "in_channels": 1, "width": 32}
    assert type(model.tpp_spec) is dict
    spec = dict(model.tpp_spec)
    rebuilt = create_model(spec.pop("name"), **spec)
    rebuilt.load_state_dict(model.state_dict(), strict=True)


def test_unknown_name_raises_model_error_with_suggestion():
    with pytest.raises(ModelError) as info:
        create_model("resnet57")
    message = str(info.value)
    assert "\n" not in message
    assert "'resnet56'" in message and "vgg19_bn" in message
    with pytest.raises(ModelError):
        model_image_size("nope")
    with pytest.raises(ModelError):
        example_inputs("nope")


def test_register_model_decorator_and_duplicates():
    name = "_test_tiny_model"

    @register_model(name, image_size=8)
    def tiny(num_classes=10, in_channels=3, **kwargs):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 64, num_classes))

    try:
        assert name in list_models()
        assert model_image_size(name) == 8
        assert create_model(name, 4)(example_inputs(name)).shape == (1, 4)
        with pytest.raises(ValueError):
            register_model(name, image_size=8)(tiny)
    finally:
        from tpp.models import registry

        registry._REGISTRY.pop(name)


# ---------------------------------------------------------------- ChannelPadShortcut


@pytest.mark.parametrize("in_c, out_c", [(16, 32), (32, 64), (3, 5)])
def test_channel_pad_shortcut_equals_option_a(in_c, out_c):
    if (out_c - in_c) % 2:
        with pytest.raises(ValueError):
            ChannelPadShortcut(in_c, out_c)
        return
    p = (out_c - in_c) // 2
    x = torch.randn(2, in_c, 9, 8)
    shortcut = ChannelPadShortcut(in_c, out_c, stride=2)
    expected = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p))
    assert torch.equal(shortcut(x), expected)
    assert shortcut.out_channels == out_c and shortcut.in_channels == in_c


def test_channel_pad_shortcut_buffer_is_non_persistent_and_prunable():
    sc = ChannelPadShortcut(4, 8, stride=2)
    assert sc.source_index.dtype == torch.long
    assert sc.source_index.tolist() == [-1, -1, 0, 1, 2, 3, -1, -1]
    assert "source_index" not in sc.state_dict()
    x = torch.randn(1, 4, 4, 4)
    full = sc(x)
    sc.keep_out_channels([1, 2, 5])  # output channels: zero, in0, in3
    assert sc.out_channels == 3
    assert torch.equal(sc(x), full[:, [1, 2, 5]])
    sc.keep_in_channels([0, 2])  # drop inputs 1 and 3: output 2 copied in3 -> becomes zero
    assert sc.in_channels == 2 and sc.source_index.tolist() == [-1, 0, -1]
    out = sc(x[:, [0, 2]])
    assert torch.equal(out[:, 1], x[:, 0, ::2, ::2]) and not out[:, [0, 2]].any()


def test_resnet56_shortcuts():
    model = create_model("resnet56")
    pads = [n for n, m in model.named_modules() if isinstance(m, ChannelPadShortcut)]
    assert pads == ["layer2.0.shortcut", "layer3.0.shortcut"]
    model_b = create_model("resnet56_b")
    names = dict(model_b.named_modules())
    assert isinstance(names["layer2.0.shortcut.0"], nn.Conv2d)
    assert isinstance(names["layer3.0.shortcut.1"], nn.BatchNorm2d)
    assert not any(isinstance(m, ChannelPadShortcut) for m in model_b.modules())


# ---------------------------------------------------------------- module names


def test_resnet56_layer_conv1_pattern():
    model = create_model("resnet56")
    names = [n for n, _ in model.named_modules()]
    hits = fnmatch.filter(names, "*layer*.conv1")
    assert len(hits) == 27
    assert "conv1" not in hits and hits[0] == "layer1.0.conv1" and hits[-1] == "layer3.8.conv1"
    for required in ("conv1", "bn1", "layer1.0.bn1", "layer1.0.conv2", "layer1.0.bn2", "linear"):
        assert required in names
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 55  # + 1 FC = 56 layers


def test_vgg19_conv_names():
    model = create_model("vgg19_bn", num_classes=100)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    idx = [0, 3, 7, 10, 14, 17, 20, 23, 27, 30, 33, 36, 40, 43, 46, 49]
    assert convs == [f"features.{i}" for i in idx]
    assert isinstance(model.features[1], nn.BatchNorm2d)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    assert isinstance(model.classifier, nn.Linear) and model.classifier.in_features == 512
    assert len([m for m in model.modules() if isinstance(m, nn.Linear)]) == 1


# ---------------------------------------------------------------- torchvision compatibility

# Known torchvision (v1.5) state_dict entries, hard-coded so that torchvision is not needed.
TORCHVISION_KEYS = {
    "resnet18": (
        122,
        {
            "conv1.weight": (64, 3, 7, 7),
            "bn1.num_batches_tracked": (),
            "layer1.0.conv1.weight": (64, 64, 3, 3),
            "layer2.0.downsample.0.weight": (128, 64, 1, 1),
            "layer2.0.downsample.1.running_var": (128,),
            "layer4.1.bn2.bias": (512,),
            "fc.weight": (1000, 512),
            "fc.bias": (1000,),
        },
    ),
    "resnet34": (
        218,
        {
            "layer3.5.conv2.weight": (256, 256, 3, 3),
            "layer4.0.downsample.0.weight": (512, 256, 1, 1),
            "fc.weight": (1000, 512),
        },
    ),
    "resnet50": (
        320,
        {
            "conv1.weight": (64, 3, 7, 7),
            "layer1.0.conv1.weight": (64, 64, 1, 1),
            "layer1.0.conv3.weight": (256, 64, 1, 1),
            "layer1.0.downsample.0.weight": (256, 64, 1, 1),
            "layer1.0.downsample.1.running_mean": (256,),
            "layer2.0.conv2.weight": (128, 128, 3, 3),
            "layer3.5.bn3.weight": (1024,),
            "layer4.2.conv3.weight": (2048, 512, 1, 1),
            "fc.weight": (1000, 2048),
        },
    ),
}


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_state_dict_matches_torchvision(name):
    n_keys, known = TORCHVISION_KEYS[name]
    model = create_model(name, num_classes=1000)
    sd = model.state_dict()
    assert len(sd) == n_keys
    for key, shape in known.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any("shortcut" in k for k in sd)
    # a state_dict with the same keys loads strictly into a fresh model
    create_model(name, num_classes=1000).load_state_dict(sd, strict=True)


def test_resnet50_is_v1_5():
    model = create_model("resnet50", num_classes=1000)
    block = model.layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    assert block.downsample[0].stride == (2, 2)
