"""`tpp import-official`: checkpoints in the official TPP code's format (a pickled whole model of
classes from a module tpp cannot import) become tpp checkpoints; pickles that would run code are
refused without running it."""

from __future__ import annotations

import builtins
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.official_format import official_module, randomize, save_official
from tpp.checkpoints import load_checkpoint
from tpp.cli.loading import model_from_checkpoint
from tpp.errors import CheckpointError
from tpp.util.safe_pickle import Placeholder, PlaceholderUnpickler, UnsafePickleError


def imported_model(out: Path) -> nn.Module:
    """The model `tpp eval` / `tpp prune` build from the checkpoint (same function)."""
    return model_from_checkpoint(out, load_checkpoint(out)).eval()


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_resnet56_imports_with_identical_logits(tmp_path, run_cli, zip_format):
    with official_module(tmp_path) as official:
        reference = randomize(official.ResNet(9, num_classes=10))
        momentum = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
        source = save_official(  # plus the other entries of a training checkpoint, numpy numbers included
            reference,
            tmp_path / "resnet56_cifar10.pth",
            "resnet56",
            zip_format=zip_format,
            epoch=120,
            optimizer=momentum.state_dict(),
            metrics={"acc1": [np.float64(93.4)]},
            lr=np.float32(1e-4),
        )
        module_name = official.__name__
    assert module_name not in sys.modules
    if zip_format:  # really a pickled module of the throwaway classes, not just a state_dict
        with zipfile.ZipFile(source) as archive:
            pkl = next(archive.read(n) for n in archive.namelist() if n.endswith("/data.pkl"))
        assert f"{module_name}\nResNet".encode() in pkl and b"ZeroPaddingX2" in pkl
    out = tmp_path / "resnet56.pt"
    result = run_cli("import-official", source, "--model", "resnet56", "--out", out)
    assert result.code == 0, result.err
    assert "resnet56, 10 classes, 3 input channels, 853,018 parameters" in result.out
    model = imported_model(out)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "build, arch, tpp_name",
    [
        (lambda m: m.ResNet(3, num_classes=10, option="B"), "resnet20_B", "resnet20_b"),
        (lambda m: m.VGG(num_classes=100), "vgg19_C", "vgg19_bn"),
        (lambda m: m.FCNet(), "mlp_7_linear", "mlp7_linear"),
    ],
    ids=["resnet20_B", "vgg19_C", "mlp_7_linear"],
)
def test_recorded_arch_picks_the_tpp_model_and_logits_match(tmp_path, run_cli, build, arch, tpp_name):
    with official_module(tmp_path) as official:
        reference = randomize(build(official))
        source = save_official(reference, tmp_path / f"{arch}.pth", arch)
    out = tmp_path / "out.pt"
    assert run_cli("import-official", source, "--out", out).code == 0  # no --model: from "arch"
    model = imported_model(out)
    assert model.tpp_spec["name"] == tpp_name
    channels = 1 if tpp_name.startswith("mlp") else 3  # the official MLP reads 32x32 grey images
    x = torch.randn(2, channels, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)


def test_weights_come_from_the_pickled_module_when_there_is_no_state_dict(tmp_path, run_cli):
    with official_module(tmp_path) as official:
        reference = randomize(official.ResNet(3))
        bare = tmp_path / "bare.pth"
        torch.save(reference, bare)  # torch.save(model): the module alone
        wrapped = tmp_path / "wrapped.pth"  # DataParallel-wrapped module, legacy format, no state_dict
        torch.save(
            {"arch": "resnet20", "model": nn.DataParallel(reference)}, wrapped, _use_new_zipfile_serialization=False
        )
    x = torch.randn(2, 3, 32, 32)
    for source in (bare, wrapped):
        out = tmp_path / f"{source.stem}.pt"
        assert run_cli("import-official", source, "--model", "resnet20", "--out", out).code == 0
        with torch.no_grad():
            torch.testing.assert_close(imported_model(out)(x), reference(x), rtol=1e-5, atol=1e-5)


def test_imported_mlp_is_evaluated_and_pruned_by_the_cli(tmp_path, run_cli):
    from tpp.data import build_loaders

    with official_module(tmp_path) as official:
        reference = randomize(official.FCNet(), seed=3)
        source = save_official(reference, tmp_path / "mlp.pth", "mlp_7_linear")
    out = tmp_path / "mlp.pt"
    assert run_cli("import-official", source, "--dataset", "mnist_subset", "--out", out).code == 0
    result = run_cli("eval", "--checkpoint", out)  # dataset recorded by the import
    assert result.code == 0, result.err
    _, test_loader, _ = build_loaders("mnist_subset", test_batch_size=500)
    correct = total = 0
    with torch.no_grad():
        for images, labels in test_loader:
            correct += int((reference(images).argmax(1) == labels).sum())
            total += len(labels)
    assert f"top-1 {100 * correct / total:.2f}%" in result.out
    job = run_cli(
        "prune",
        "--method",
        "tpp",
        "--model",
        "mlp7_linear",
        "--dataset",
        "mnist_subset",
        "--checkpoint",
        out,
        "--ratio",
        "0.5",
        "--train-subset",
        "64",
        "--batch-size",
        "32",
        "--test-batch-size",
        "500",
        "--reg-step",
        "0.5",
        "--reg-interval",
        "1",
        "--stabilize-iters",
        "2",
        "--zero-out-interval",
        "1",
        "--ft-epochs",
        "1",
        "--jsv-batches",
        "0",
        "--out",
        tmp_path / "job",
        "--quiet",
    )
    assert job.code == 0, job.err
    assert (tmp_path / "job" / "pruned_model.pt").is_file()


# ------------------------------------------------------------------ refusals


class Calls:
    """Unpickling this calls ``func(*args)`` (pickle's REDUCE)."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def exploits(sentinel: Path) -> dict[str, Calls]:
    return {
        "os.system": Calls(os.system, f"touch {sentinel}"),
        "builtins.exec": Calls(builtins.exec, f"open({str(sentinel)!r}, 'w').close()"),
        "subprocess.Popen": Calls(subprocess.Popen, ["touch", str(sentinel)]),
        # io is on no deny list: refused because calling any placeholder is refused
        "io.open": Calls(io.open, str(sentinel), "w"),
    }


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("where", ["top", "nested"])
@pytest.mark.parametrize("exploit", ["os.system", "builtins.exec", "subprocess.Popen", "io.open"])
def test_pickles_that_would_run_code_are_refused_without_running_it(tmp_path, run_cli, exploit, where, zip_format):
    sentinel = tmp_path / "SENTINEL"
    evil = exploits(sentinel)[exploit]
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.BatchNorm2d(4)))
    if where == "nested":  # inside the state of a submodule deep in the pickled model
        model[1][0].hook_config = {"on_load": [evil]}
        payload = {"arch": "resnet20", "model": model, "state_dict": model.state_dict()}
    else:
        payload = {"arch": "resnet20", "model": evil}
    source = tmp_path / "evil.pth"
    torch.save(payload, source, _use_new_zipfile_serialization=zip_format)
    out = tmp_path / "out.pt"
    out.write_bytes(b"previous")  # not tpp's: --overwrite lets the import get as far as the pickle
    result = run_cli("import-official", source, "--model", "resnet20", "--out", out, "--overwrite")
    assert result.code == 2 and len(result.err_lines) == 1
    assert "holds code that tpp will not run" in result.err and exploit.split(".")[1] in result.err
    assert not sentinel.exists()
    assert out.read_bytes() == b"previous"


def test_calling_a_placeholder_is_refused_but_creating_one_is_not():
    import pickle

    unpickler = PlaceholderUnpickler(io.BytesIO(b""))
    cls = unpickler.find_class("some_pkg.models", "Net")
    assert issubclass(cls, Placeholder) and cls is unpickler.find_class("some_pkg.models", "Net")
    obj = cls.__new__(cls)  # NEWOBJ, how pickle rebuilds an ordinary object
    obj.__setstate__({"a": 1})
    assert obj.tpp_state == {"a": 1}
    with pytest.raises(UnsafePickleError, match="call some_pkg.models.Net"):
        cls("x")  # REDUCE
    for module, name in (
        ("posix", "system"),
        ("builtins", "eval"),
        ("__builtin__", "getattr"),
        ("commands", "getoutput"),
    ):
        with pytest.raises(UnsafePickleError):
            unpickler.find_class(module, name)
    assert unpickler.find_class("__builtin__", "set") is set  # Python 2 names are translated
    assert pickle.loads(pickle.dumps(Calls(len, "abc"), protocol=2)) == 3  # what REDUCE does unrestricted


def test_the_exploits_do_run_under_an_unrestricted_unpickler(tmp_path):
    """The refusal test above can fail: plain pickle runs each of these payloads."""
    import pickle

    for name, evil in exploits(tmp_path / "SENTINEL").items():
        result = pickle.loads(pickle.dumps(evil, protocol=2))
        if isinstance(result, subprocess.Popen):
            result.wait()
        elif hasattr(result, "close"):
            result.close()
        assert (tmp_path / "SENTINEL").exists(), name
        (tmp_path / "SENTINEL").unlink()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archives_are_refused(tmp_path, run_cli):
    source = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(source))
    result = run_cli("import-official", source, "--model", "resnet20", "--out", tmp_path / "out.pt")
    assert result.code == 2 and len(result.err_lines) == 1 and "TorchScript" in result.err


def _official_resnet20(tmp_path: Path) -> Path:
    with official_module(tmp_path) as official:
        return save_official(official.ResNet(3), tmp_path / "r20.pth", "resnet20")


def test_garbage_and_truncated_files_give_one_line(tmp_path, run_cli):
    good = _official_resnet20(tmp_path)
    data = good.read_bytes()
    legacy = tmp_path / "legacy.pth"
    torch.save({"x": torch.ones(3)}, legacy, _use_new_zipfile_serialization=False)
    files = {
        "empty": b"",
        "text": b"this is not a checkpoint\n",
        "random": os.urandom(4096),
        "truncated_zip": data[: len(data) // 2],
        "truncated_legacy": legacy.read_bytes()[:-20],
    }
    for name, content in files.items():
        path = tmp_path / f"{name}.pth"
        path.write_bytes(content)
        result = run_cli("import-official", path, "--model", "resnet20", "--out", tmp_path / "out.pt")
        assert result.code == 2 and len(result.err_lines) == 1, (name, result.err)
        assert "not a readable PyTorch checkpoint" in result.err, (name, result.err)
    not_weights = tmp_path / "number.pth"
    torch.save(42, not_weights)
    result = run_cli("import-official", not_weights, "--model", "resnet20", "--out", tmp_path / "out.pt")
    assert result.code == 2 and "holds no model weights" in result.err
    result = run_cli("import-official", tmp_path / "missing.pth", "--out", tmp_path / "out.pt")
    assert result.code == 2 and "is not a file" in result.err
    assert not (tmp_path / "out.pt").exists()


def test_wrong_architecture_and_unmapped_names_are_one_line_errors(tmp_path, run_cli):
    source = _official_resnet20(tmp_path)
    out = tmp_path / "out.pt"
    result = run_cli("import-official", source, "--model", "resnet56", "--out", out)
    assert result.code == 2 and len(result.err_lines) == 1
    assert (
        "does not hold an unpruned resnet56" in result.err and "layer1.3.conv1.weight [16,16,3,3] missing" in result.err
    )
    result = run_cli("import-official", source, "--model", "resnet20", "--num-classes", "100", "--out", out)
    assert result.code == 2 and "linear.weight is [10,64] in the file, [100,64] in tpp" in result.err
    result = run_cli("import-official", source, "--model", "resnet50", "--out", out)
    assert result.code == 2 and "cannot map official checkpoints onto 'resnet50'" in result.err
    unknown = tmp_path / "unknown.pth"
    torch.save({"arch": "resnet56x4", "state_dict": {"w": torch.ones(1)}}, unknown)
    result = run_cli("import-official", unknown, "--out", out)
    assert result.code == 2 and "records arch 'resnet56x4'" in result.err and "pass --model" in result.err
    result = run_cli("import-official", source, "--dataset", "cifar100", "--out", out)
    assert result.code == 2 and "[10,64] in the file, [100,64] in tpp" in result.err
    result = run_cli("import-official", source, "--out", source)
    assert result.code == 2 and "is the input file" in result.err
    assert not out.exists()


def test_library_function_returns_a_loaded_model(tmp_path):
    from tpp.models import load_official

    source = _official_resnet20(tmp_path)
    model = load_official(source)
    assert model.tpp_spec == {"name": "resnet20", "num_classes": 10, "in_channels": 3}
    with pytest.raises(CheckpointError):
        load_official(tmp_path / "absent.pth", "resnet20")
