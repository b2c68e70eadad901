"""User models through the CLI on real digits written as PNGs (``digit_folder``): module:function
and hf: folder models trained, pruned and reloaded without flags, ``--weights``, the README flow."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
import torch

import tpp
from tests.user_model_zoo import FACTORY, data_args, one_line_error, small_cnn, top1
from tpp.checkpoints import load_pruned
from tpp.errors import CheckpointError
from tpp.models import build_model, example_inputs, load_weights

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained_factory_run(digit_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``tpp train`` of the module:function CNN on the digit PNGs (6 epochs): (run dir, output)."""
    import contextlib
    import io

    from tpp.cli.main import main

    out = tmp_path_factory.mktemp("factory-run")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(
            [
                "train",
                "--model",
                FACTORY,
                *data_args(digit_folder),
                "--epochs",
                "6",
                "--lr",
                "cosine:0.1",
                "--batch-size",
                "32",
                "--out",
                str(out),
                "--overwrite",
                "--quiet",
            ]
        )
    assert code == 0
    return out, buffer.getvalue()


def test_factory_model_trains_prunes_and_reloads_without_flags(trained_factory_run, digit_folder, run_cli, tmp_path):
    run, printed = trained_factory_run
    assert top1(printed.replace("best top-1 ", "top-1 ")) > 70  # real digits, 10 classes: chance is 10%
    base = run_cli("eval", "--checkpoint", run / "best.pt")  # data folder and its options come from the config
    assert base.code == 0 and top1(base.out) > 70 and "300 imagefolder test images" in base.out
    pruned = tmp_path / "l1"
    result = run_cli(
        "prune",
        "--method",
        "l1",
        "--model",
        FACTORY,
        "--checkpoint",
        run / "best.pt",
        *data_args(digit_folder),
        "--ratio",
        "0.5",
        "--ft-epochs",
        "2",
        "--ft-lr",
        "0.01",
        "--batch-size",
        "32",
        "--out",
        pruned,
        "--quiet",
    )
    assert result.code == 0, result.err
    report = json.loads((pruned / "report.json").read_text())
    assert report["accuracy_before"]["top1"] == pytest.approx(top1(base.out), abs=0.01)
    assert report["counts_after"]["params"] < 0.5 * report["counts_before"]["params"]
    assert report["finetune"]["last_top1"] > 50
    # no --model: the file records the spec; the data options must be given again
    evaluated = run_cli("eval", "--checkpoint", pruned / "pruned_model.pt", *data_args(digit_folder))
    assert evaluated.code == 0 and top1(evaluated.out) == pytest.approx(report["finetune"]["last_top1"], abs=0.01)
    info = run_cli("info", "--checkpoint", pruned / "pruned_model.pt", "--json")
    assert info.code == 0, info.err
    counted = json.loads(info.out)
    assert counted["input_shape"] == [1, 1, 32, 32] and counted["model"]["spec"] == FACTORY
    assert counted["totals"]["params"] == report["counts_after"]["params"]
    jsv = run_cli("jsv", "--checkpoint", pruned / "pruned_model.pt", *data_args(digit_folder), "--json")
    assert jsv.code == 0 and json.loads(jsv.out)["mean"] > 0
    exported = run_cli("export", "--checkpoint", pruned / "pruned_model.pt", "--out", tmp_path / "m.onnx")
    assert exported.code == 0 and (tmp_path / "m.onnx").stat().st_size > 1000, exported.err
    model = tpp.load_pruned(pruned / "pruned_model.pt")  # no base_model=
    assert sum(p.numel() for p in model.parameters()) == report["counts_after"]["params"]


def test_factory_model_prunes_with_a_short_tpp_schedule(trained_factory_run, digit_folder, run_cli, tmp_path):
    run, _ = trained_factory_run
    result = run_cli(
        "prune",
        "--method",
        "tpp",
        "--model",
        FACTORY,
        "--checkpoint",
        run / "best.pt",
        *data_args(digit_folder),
        "--ratio",
        "0.5",
        "--reg-step",
        "0.05",
        "--reg-interval",
        "1",
        "--reg-ceiling",
        "0.5",
        "--stabilize-iters",
        "15",
        "--zero-out-interval",
        "5",
        "--ft-epochs",
        "1",
        "--ft-lr",
        "0.01",
        "--batch-size",
        "32",
        "--jsv-batches",
        "0",
        "--out",
        tmp_path,
        "--quiet",
    )
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "report.json").read_text())
    # lambda grows 0.05 per iteration to its 0.5 ceiling (10 iterations), then 15 stabilising ones
    assert report["regularization"]["iterations"] == 25 and report["regularization"]["final_lambda"] == pytest.approx(
        0.5
    )
    assert report["counts_after"]["params"] < report["counts_before"]["params"]
    assert report["finetune"]["last_top1"] > 30
    assert type(load_pruned(tmp_path / "pruned_model.pt")).__name__ == "Sequential"


def _save_tiny_hf_config(folder: Path) -> None:
    from transformers import ResNetConfig

    ResNetConfig(
        num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=10
    ).save_pretrained(folder)


def test_hf_folder_model_with_safetensors_weights(digit_folder, run_cli, tmp_path):
    from safetensors.torch import save_file

    from tpp.checkpoints import extract_state_dict, load_checkpoint

    folder = tmp_path / "tiny-resnet"
    _save_tiny_hf_config(folder)
    spec = f"hf:{folder}"
    data = data_args(digit_folder)
    trained = run_cli(
        "train",
        "--model",
        spec,
        *data,
        "--epochs",
        "2",
        "--lr",
        "cosine:0.1",
        "--batch-size",
        "32",
        "--train-subset",
        "500",
        "--out",
        tmp_path / "run",
        "--quiet",
    )
    assert trained.code == 0, trained.err
    state = extract_state_dict(load_checkpoint(tmp_path / "run" / "best.pt"))
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    from_checkpoint = run_cli("eval", "--checkpoint", tmp_path / "run" / "best.pt", *data)
    from_weights = run_cli("eval", "--model", spec, "--weights", tmp_path / "w.safetensors", *data)
    assert from_weights.code == 0, from_weights.err
    assert top1(from_weights.out) == top1(from_checkpoint.out) > 20  # two epochs on 500 digits
    result = run_cli(
        "prune",
        "--method",
        "l1",
        "--model",
        spec,
        "--weights",
        tmp_path / "w.safetensors",
        *data,
        "--ratio",
        "0.5",
        "--ft-epochs",
        "1",
        "--ft-lr",
        "0.01",
        "--batch-size",
        "32",
        "--train-subset",
        "500",
        "--out",
        tmp_path / "pruned",
        "--quiet",
    )
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "pruned" / "report.json").read_text())
    assert report["counts_after"]["params"] < report["counts_before"]["params"]
    folder.rename(tmp_path / "moved")  # the file records the configuration, not just the folder
    evaluated = run_cli("eval", "--checkpoint", tmp_path / "pruned" / "pruned_model.pt", *data)
    assert evaluated.code == 0, evaluated.err
    assert top1(evaluated.out) == pytest.approx(report["finetune"]["last_top1"], abs=0.01)
    model = load_pruned(tmp_path / "pruned" / "pruned_model.pt")
    assert type(model).__name__ == "ResNetForImageClassification"
    assert model(example_inputs(model, batch_size=2)).logits.shape == (2, 10)


def test_weights_mismatch_is_one_line_naming_the_keys(run_cli, digit_folder, tmp_path):
    torch.save(small_cnn(num_classes=5, in_channels=1).state_dict(), tmp_path / "five.pt")
    model = build_model(FACTORY, num_classes=10, in_channels=1)
    with pytest.raises(CheckpointError) as excinfo:
        load_weights(model, tmp_path / "five.pt")
    assert "shape of 13.weight [5, 32] vs [10, 32] in the model" in str(excinfo.value)
    state = small_cnn(10, 1).state_dict()
    for key in ("0.weight", "1.weight", "1.bias", "1.running_mean"):
        del state[key]
    state["extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "partial.pth")
    result = run_cli("eval", "--model", FACTORY, "--weights", tmp_path / "partial.pth", *data_args(digit_folder))
    one_line_error(result, "missing 0.weight, 1.weight, 1.bias (+1 more)", "unexpected extra.weight")
    torch.save({"model": small_cnn(10, 1)}, tmp_path / "pickled.pt")  # a whole module: code, not data
    one_line_error(
        run_cli("eval", "--model", FACTORY, "--weights", tmp_path / "pickled.pt", *data_args(digit_folder)),
        "pickled Python objects",
    )
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    one_line_error(
        run_cli("eval", "--model", FACTORY, "--weights", tmp_path / "bad.safetensors", *data_args(digit_folder)),
        "not a readable safetensors file",
    )
    one_line_error(run_cli("eval", "--model", FACTORY, *data_args(digit_folder)), "--checkpoint is required")


def test_dict_output_model_trains_and_evaluates(run_cli, digit_folder, tmp_path):
    result = run_cli(
        "train",
        "--model",
        "tests.user_model_zoo:DictOutputNet",
        *data_args(digit_folder),
        "--epochs",
        "2",
        "--lr",
        "cosine:0.1",
        "--batch-size",
        "32",
        "--out",
        tmp_path,
        "--quiet",
    )
    assert result.code == 0, result.err
    assert top1(result.out.replace("best top-1 ", "top-1 ")) > 20  # chance: 10% (+-1.7% on 300 images)
    jsv = run_cli(
        "jsv", "--checkpoint", tmp_path / "best.pt", "--data-dir", digit_folder, "--dataset", "imagefolder", "--json"
    )
    assert jsv.code == 0 and json.loads(jsv.out)["mean"] > 0, jsv.err


def test_factory_problems_are_one_line_errors(run_cli, digit_folder):
    data = data_args(digit_folder, "--epochs", "1", "--quiet")
    one_line_error(run_cli("train", "--model", "no_such_module_xyz:net", *data), "cannot import 'no_such_module_xyz'")
    one_line_error(run_cli("train", "--model", "tests.user_model_zoo:nothing", *data), "has no 'nothing'")
    one_line_error(run_cli("train", "--model", "tests.user_model_zoo:not_a_model", *data), "not a torch.nn.Module")
    # takes no num_classes/in_channels: builds RGB 10-class models, which grayscale input cannot feed
    one_line_error(run_cli("train", "--model", "tests.user_model_zoo:fixed_ten_classes", *data), "cannot take")
    one_line_error(run_cli("train", "--model", "resnet20", "--pretrained", *data), "no published weights")
    one_line_error(run_cli("train", "--model", "a b:c", *data), "not a model spec")
    one_line_error(run_cli("train", "--model", "resnet2", *data), "Did you mean", "package.module:function")


def test_wrong_number_of_classes_is_caught_before_training(run_cli, digit_folder, tmp_path):
    root = tmp_path / "three"
    for split in ("train", "val"):
        for name in ("digit_0", "digit_1", "digit_2"):
            (root / split).mkdir(parents=True, exist_ok=True)
            (root / split / name).symlink_to(digit_folder / split / name)
    result = run_cli(
        "train",
        "--model",
        "tests.user_model_zoo:fixed_ten_classes",
        "--dataset",
        "imagefolder",
        "--data-dir",
        root,
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--quiet",
    )
    one_line_error(result, "not 3 class scores")


def test_readme_user_model_flow(digit_folder, run_cli, tmp_path, monkeypatch):
    """The README's 'Your own model and images' commands, verbatim, on the digit PNGs."""
    text = (REPO / "README.md").read_text()
    section = text.split("### Your own model and images", 1)[1].split("\n## ", 1)[0]
    python = section.split("```python\n", 1)[1].split("```", 1)[0]
    bash = section.split("```bash\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    commands = [
        shlex.split(line, comments=True) for line in bash.splitlines() if line.strip() and not line.startswith("#")
    ]
    assert [c[:2] for c in commands] == [
        ["tpp", "train"],
        ["tpp", "prune"],
        ["tpp", "prune"],
        ["tpp", "eval"],
        ["tpp", "info"],
    ]
    (tmp_path / "mymodels.py").write_text(python)
    (tmp_path / "photos").symlink_to(digit_folder)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # tpp adds the current folder for module:function
    monkeypatch.delitem(sys.modules, "mymodels", raising=False)
    outputs = []
    for command in commands:
        result = run_cli(*command[1:])
        assert result.code == 0, (command, result.err)
        outputs.append(result.out)
    sys.modules.pop("mymodels", None)
    assert top1(outputs[0].replace("best top-1 ", "top-1 ")) > 70  # RGB-converted digits, 6 epochs
    report = json.loads((tmp_path / "runs" / "small" / "report.json").read_text())
    assert "l1 would remove" in outputs[1] and "4 fine-tuning epochs" in outputs[1]  # the dry run
    assert top1(outputs[3]) == pytest.approx(report["finetune"]["last_top1"], abs=0.01)
    assert report["finetune"]["last_top1"] > 50 and report["counts_after"]["params"] < report["counts_before"]["params"]
    assert f"params {report['counts_after']['params'] / 1000:.2f}K" in outputs[4]
