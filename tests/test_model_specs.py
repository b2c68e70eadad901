"""Model specs outside the registry: hf: classes and folders, timm:/torchvision: adapters (through
stand-ins where the library is absent), missing extras, Hub downloads, and what a file may name."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from tests.user_model_zoo import FACTORY, data_args, one_line_error, small_cnn
from tpp.checkpoints import load_pruned, save_pruned
from tpp.errors import CheckpointError, ModelError
from tpp.models import build_model, example_inputs, model_from_record


def test_hf_class_name_builds_the_default_configuration():
    model = build_model("hf:ResNetForImageClassification", num_classes=7, in_channels=1, image_size=64)
    assert model.config.num_labels == 7 and model.config.num_channels == 1
    assert model.tpp_spec["hf_class"] == "ResNetForImageClassification" and model.tpp_spec["image_size"] == 64
    again = model_from_record(model.tpp_spec, source="file.pt")
    assert [p.shape for p in again.parameters()] == [p.shape for p in model.parameters()]


def test_missing_extras_name_the_pip_extra(run_cli, monkeypatch):
    for module, spec, extra in (
        ("timm", "timm:resnet18", "timm"),
        ("torchvision", "torchvision:resnet18", "vision"),
        ("transformers", "hf:ResNetForImageClassification", "transformers"),
    ):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
        result = run_cli("info", "--model", spec, "--image-size", "32")
        one_line_error(result, f"{module} is not installed", f"pip install 'tpp-pruning[{extra}]'")


def _stand_in_timm(calls: list) -> types.ModuleType:
    """A module with timm's create_model / is_model / list_models signatures (tests the adapter
    without timm, which is not installed here)."""
    fake = types.ModuleType("timm")

    def create_model(name, pretrained=False, num_classes=1000, in_chans=3, **kwargs):
        calls.append(dict(name=name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans))
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")
        return small_cnn(num_classes, in_chans)

    fake.create_model = create_model
    fake.list_models = lambda: ["small_cnn", "resnet18"]
    fake.is_model = lambda name: name in fake.list_models()
    return fake


def test_timm_specs_go_through_create_model(monkeypatch, run_cli):
    calls: list = []
    monkeypatch.setitem(sys.modules, "timm", _stand_in_timm(calls))
    model = build_model("timm:small_cnn", num_classes=7, in_channels=1, image_size=28)
    assert calls[-1] == dict(name="small_cnn", pretrained=False, num_classes=7, in_chans=1)
    assert model.tpp_spec == {"spec": "timm:small_cnn", "num_classes": 7, "in_channels": 1, "image_size": 28}
    assert example_inputs(model).shape == (1, 1, 28, 28)
    with pytest.raises(ModelError, match="Did you mean timm:small_cnn"):
        build_model("timm:smal_cnn")
    with pytest.raises(ModelError) as excinfo:
        build_model("timm:resnet18", pretrained=True)
    assert "could not get the pretrained weights of timm:resnet18" in str(excinfo.value)
    assert "\n" not in str(excinfo.value) and calls[-1]["pretrained"] is True
    result = run_cli("info", "--model", "timm:small_cnn", "--image-size", "32", "--num-classes", "4")
    assert result.code == 0 and "timm:small_cnn: input [1, 3, 32, 32], 4 classes" in result.out


def test_hub_models_need_pretrained_and_fail_clearly_offline(run_cli, digit_folder, monkeypatch):
    import huggingface_hub.constants

    data = data_args(digit_folder)
    one_line_error(
        run_cli("eval", "--model", "hf:tpp-tests/no-such-model", "--weights", "x.pt", *data),
        "add --pretrained to download",
    )
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network in tests
    one_line_error(
        run_cli("eval", "--model", "hf:tpp-tests/no-such-model", "--pretrained", *data),
        "could not get the pretrained weights of hf:tpp-tests/no-such-model",
        "drop --pretrained",
    )


def test_pruned_files_call_only_plain_model_factories(tmp_path, run_cli, digit_folder):
    for spec in ("os:getcwd", "tests.user_model_zoo:fixed_ten_classes"):
        model = small_cnn(10, 3)
        model.tpp_spec = {"spec": spec, "num_classes": 10, "in_channels": 3}
        save_pruned(model, tmp_path / "m.pt")
        with pytest.raises(CheckpointError) as excinfo:
            load_pruned(tmp_path / "m.pt")
        assert f"names {spec}, which is not a model factory" in str(excinfo.value)
    # naming the factory yourself is consent: the same file then loads
    result = run_cli(
        "eval",
        "--checkpoint",
        tmp_path / "m.pt",
        "--model",
        "tests.user_model_zoo:fixed_ten_classes",
        "--dataset",
        "imagefolder",
        "--data-dir",
        digit_folder,
        "--image-size",
        "32",
    )
    assert result.code == 0 and "top-1" in result.out, result.err
    model = small_cnn(10, 1)
    model.tpp_spec = {"spec": "tests.user_model_zoo:small_cnn", "num_classes": 10, "in_channels": 1}
    save_pruned(model, tmp_path / "ok.pt")
    assert isinstance(load_pruned(tmp_path / "ok.pt"), nn.Sequential)


def test_hf_folder_with_weights_loads_them_without_network(tmp_path, run_cli, digit_folder):
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    saved = ResNetForImageClassification(
        ResNetConfig(
            num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=10
        )
    )
    saved.save_pretrained(tmp_path / "ckpt")  # config.json + model.safetensors
    loaded = build_model(f"hf:{tmp_path / 'ckpt'}", num_classes=10, in_channels=1)
    reference = saved.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in loaded.state_dict().items())
    three = build_model(f"hf:{tmp_path / 'ckpt'}", num_classes=3, in_channels=1)  # new head, same body
    assert three.classifier[-1].out_features == 3
    assert torch.equal(
        three.state_dict()["resnet.embedder.embedder.convolution.weight"],
        reference["resnet.embedder.embedder.convolution.weight"],
    )
    result = run_cli(
        "info",
        "--model",
        f"hf:{tmp_path / 'ckpt'}",
        "--dataset",
        "imagefolder",
        "--data-dir",
        digit_folder,
        "--in-channels",
        "1",
        "--image-size",
        "32",
    )
    assert result.code == 0 and ": input [1, 1, 32, 32], 10 classes" in result.out, result.err


def test_input_size_comes_from_the_plan_when_the_spec_lacks_it(tmp_path):
    from tpp.pruning.methods.l1 import L1Pruner

    model = build_model(FACTORY, num_classes=10, in_channels=1)  # no image_size recorded
    with pytest.raises(ModelError, match="--image-size"):
        example_inputs(model)
    pruned = L1Pruner(model, torch.randn(2, 1, 28, 28), ratio=0.5).prune()
    save_pruned(pruned, tmp_path / "p.pt")
    again = load_pruned(tmp_path / "p.pt")
    assert example_inputs(again, batch_size=3).shape == (3, 1, 28, 28)
    assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in pruned.parameters())


def test_torchvision_specs_go_through_get_model(monkeypatch):
    """torchvision cannot load with this CPU torch: a stand-in with its get_model / list_models
    signatures checks the adapter (arguments, RGB check, new classifier on pretrained weights)."""
    calls: list = []
    package, models = types.ModuleType("torchvision"), types.ModuleType("torchvision.models")

    def get_model(name, weights=None, num_classes=1000):
        calls.append(dict(name=name, weights=weights, num_classes=num_classes))
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))

    models.get_model, models.list_models = get_model, lambda: ["resnet18", "vgg11"]
    package.models = models
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    model = build_model("torchvision:resnet18", num_classes=5, image_size=64)
    assert calls[-1] == dict(name="resnet18", weights=None, num_classes=5) and model[-1].out_features == 5
    assert model_from_record(model.tpp_spec, source="f.pt")[-1].out_features == 5
    pretrained = build_model("torchvision:vgg11", num_classes=5, pretrained=True)
    assert calls[-1] == dict(name="vgg11", weights="DEFAULT", num_classes=1000)
    assert pretrained[-1].out_features == 5 and pretrained[-1].in_features == 4  # fresh head, same features
    with pytest.raises(ModelError, match="3-channel"):
        build_model("torchvision:resnet18", in_channels=1)
    with pytest.raises(ModelError, match="Did you mean torchvision:resnet18"):
        build_model("torchvision:resnet19")


def test_hf_folder_weights_onto_grayscale_input_keep_the_rest(tmp_path):
    from transformers import ResNetConfig, ResNetForImageClassification

    saved = ResNetForImageClassification(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=10)
    )
    saved.save_pretrained(tmp_path)
    model = build_model(f"hf:{tmp_path}", num_classes=10, in_channels=1)  # RGB weights, grayscale data
    assert model.resnet.embedder.embedder.convolution.in_channels == 1 and model.config.num_channels == 1
    assert torch.equal(model.classifier[1].weight, saved.classifier[1].weight)
    assert model(torch.zeros(1, 1, 32, 32)).logits.shape == (1, 10)


def test_a_file_cannot_make_tpp_import_a_module_from_elsewhere(tmp_path, monkeypatch):
    """Importing runs a module's code: a pruned file may not name one that is not imported, and nothing of
    it runs when it does (tests/test_hostile_files.py: not even a module in the current folder)."""
    elsewhere = tmp_path / "site"
    elsewhere.mkdir()
    sentinel = tmp_path / "ran"
    (elsewhere / "evil_models.py").write_text(
        f"open({str(sentinel)!r}, 'w').close()\n\ndef factory(num_classes=10, in_channels=3):\n    return None\n"
    )
    monkeypatch.syspath_prepend(str(elsewhere))
    model = small_cnn(10, 3)
    model.tpp_spec = {"spec": "evil_models:factory", "num_classes": 10, "in_channels": 3}
    save_pruned(model, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="evil_models is not imported"):
        load_pruned(tmp_path / "m.pt")
    assert not sentinel.exists() and "evil_models" not in sys.modules
