"""The `tpp` command line: train/eval/info, --config files, run directories, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tpp.checkpoints import load_checkpoint, make_payload, save_checkpoint
from tpp.models import create_model

QUICK = [
    "--model",
    "mlp7_linear",
    "--dataset",
    "mnist_subset",
    "--train-subset",
    "600",
    "--batch-size",
    "64",
    "--quiet",
]


def _assert_one_line_error(result, *needles: str) -> None:
    assert result.code != 0
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert line.startswith("tpp: error: ") and "Traceback" not in result.err
    for needle in needles:
        assert needle in line, line


@pytest.fixture
def out_with_file(tmp_path: Path) -> Path:
    """An output folder that already holds a user's file, which no failing command may touch."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("do not touch")
    return out


def _untouched(out: Path) -> bool:
    return (
        sorted(p.name for p in out.iterdir()) == ["precious.txt"]
        and (out / "precious.txt").read_text() == "do not touch"
    )


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--model", "resnet57", "--dataset", "mnist_subset"], ["resnet57", "resnet56"]),
        (["--model", "mlp7_linear", "--dataset", "mnist2"], ["mnist2", "mnist_subset"]),
        (
            ["--model", "mlp7_linear", "--dataset", "mnist_subset", "--lr", "0:0.1,30"],
            ["invalid LR schedule", "0:0.01,60:0.001"],
        ),
        (["--dataset", "mnist_subset"], ["--model is required"]),
        (["--model", "mlp7_linear", "--dataset", "mnist_subset", "--epochs", "0"], ["--epochs"]),
        (["--model", "mlp7_linear", "--dataset", "mnist_subset", "--bogus"], ["unrecognized arguments: --bogus"]),
        (["--model", "mlp7_linear", "--dataset", "mnist_subset", "--device", "tpu"], ["invalid device"]),
    ],
)
def test_bad_train_arguments(run_cli, out_with_file: Path, args: list[str], needles: list[str]) -> None:
    result = run_cli("train", *args, "--out", out_with_file, "--overwrite")
    _assert_one_line_error(result, *needles)
    assert _untouched(out_with_file)


def test_missing_and_corrupt_data_files(run_cli, tmp_path: Path, out_with_file: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli(
        "train",
        "--model",
        "mlp7_linear",
        "--dataset",
        "mnist",
        "--data-dir",
        empty,
        "--out",
        out_with_file,
        "--overwrite",
    )
    _assert_one_line_error(result, "MNIST")
    raw = tmp_path / "bad" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ):
        (raw / name).write_bytes(b"\x1f\x8b garbage, not gzip")
    result = run_cli(
        "train",
        "--model",
        "mlp7_linear",
        "--dataset",
        "mnist",
        "--data-dir",
        tmp_path / "bad",
        "--out",
        out_with_file,
        "--overwrite",
    )
    _assert_one_line_error(result, "Corrupt")
    assert _untouched(out_with_file)


def test_unwritable_output_and_non_empty_output(run_cli, tmp_path: Path, out_with_file: Path) -> None:
    blocker = tmp_path / "a_regular_file"
    blocker.write_text("keep")
    _assert_one_line_error(
        run_cli("train", *QUICK, "--epochs", "1", "--out", blocker / "run"), "cannot create run directory"
    )
    assert blocker.read_text() == "keep"
    _assert_one_line_error(
        run_cli("train", *QUICK, "--epochs", "1", "--out", out_with_file), "not empty", "--overwrite"
    )
    assert _untouched(out_with_file)


def test_config_file_errors(run_cli, tmp_path: Path, out_with_file: Path) -> None:
    bad_key = tmp_path / "bad_key.yaml"
    bad_key.write_text("model: mlp7_linear\nlearning_rate: 0.1\n")
    _assert_one_line_error(
        run_cli("train", "--config", bad_key, "--out", out_with_file), "learning_rate", "valid keys", "batch-size"
    )
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("model: [mlp7_linear\nepochs: 2\n")
    _assert_one_line_error(run_cli("train", "--config", malformed, "--out", out_with_file), "not valid YAML")
    wrong_type = tmp_path / "wrong_type.yaml"
    wrong_type.write_text("epochs: many\n")
    _assert_one_line_error(run_cli("train", "--config", wrong_type, "--out", out_with_file), "epochs")
    _assert_one_line_error(run_cli("train", "--config", tmp_path / "nope.yaml"), "cannot read config file")
    assert _untouched(out_with_file)


def test_config_file_values_and_command_line_override(run_cli, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        "model: mlp7_linear\ndataset: mnist_subset\nepochs: 2\nlr: 0.03\nbatch_size: 256\n"
        "train-subset: 600\nweight-decay: 0.0001\nquiet: true\nseed: 7\n"
    )
    out = tmp_path / "run"
    result = run_cli("train", "--config", config, "--batch-size", "100", "--out", out)
    assert result.code == 0, result.err
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["epochs"] == 2 and resolved["lr"] == "0.03" and resolved["weight_decay"] == 0.0001
    assert resolved["batch_size"] == 100 and resolved["seed"] == 7 and resolved["train_subset"] == 600
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 7 and meta["torch_version"] and meta["tpp_version"] and "--batch-size" in meta["argv"]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]
    assert {"lr", "train_loss", "train_top1", "test_top1", "test_top5", "best_top1", "time"} <= set(
        json.loads(lines[0])
    )
    assert (out / "last.pt").is_file() and (out / "best.pt").is_file()
    assert "best top-1" in result.out

    best = max(json.loads(line)["test_top1"] for line in lines)
    evaluated = run_cli("eval", "--checkpoint", out / "best.pt")  # model and dataset from the checkpoint
    assert evaluated.code == 0, evaluated.err
    assert f"top-1 {best:.2f}%" in evaluated.out


def test_train_learns_mnist_subset(run_cli, tmp_path: Path) -> None:
    # 6000 embedded real MNIST digits; a linear 7-layer MLP passes 80% within 3 epochs
    result = run_cli(
        "train",
        "--model",
        "mlp7_linear",
        "--dataset",
        "mnist_subset",
        "--epochs",
        "3",
        "--lr",
        "0.02",
        "--quiet",
        "--out",
        tmp_path / "r",
    )
    assert result.code == 0, result.err
    best = max(json.loads(line)["test_top1"] for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines())
    assert best > 80.0


def test_resume_via_cli_is_bit_identical(run_cli, tmp_path: Path) -> None:
    common = [*QUICK, "--lr", "0:0.03,2:0.01"]
    assert run_cli("train", *common, "--epochs", "3", "--out", tmp_path / "full").code == 0
    assert run_cli("train", *common, "--epochs", "2", "--out", tmp_path / "part").code == 0
    result = run_cli("train", *common, "--epochs", "3", "--out", tmp_path / "part", "--resume")
    assert result.code == 0, result.err
    full = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    part = load_checkpoint(tmp_path / "part" / "last.pt")["model"]
    assert all(full[k].equal(part[k]) for k in full)
    assert len((tmp_path / "part" / "metrics.jsonl").read_text().splitlines()) == 3
    mismatch = run_cli("train", *common, "--epochs", "3", "--seed", "1", "--out", tmp_path / "part", "--resume")
    _assert_one_line_error(mismatch, "--seed")


def test_eval_checkpoint_errors(run_cli, tmp_path: Path) -> None:
    ckpt = tmp_path / "resnet20.pt"
    save_checkpoint(ckpt, make_payload(create_model("resnet20", in_channels=1), config={"dataset": "mnist_subset"}))
    _assert_one_line_error(
        run_cli("eval", "--checkpoint", ckpt, "--model", "resnet56"), "different architecture", "--model"
    )
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00" * 100)
    _assert_one_line_error(
        run_cli("eval", "--checkpoint", corrupt, "--dataset", "mnist_subset"), "not a readable tpp checkpoint"
    )
    _assert_one_line_error(run_cli("eval", "--checkpoint", tmp_path / "missing.pt"), "does not exist")
    _assert_one_line_error(run_cli("eval"), "--checkpoint is required")


def test_info_resnet56_totals(run_cli) -> None:
    result = run_cli("info", "--model", "resnet56", "--dataset", "cifar10")
    assert result.code == 0, result.err
    total = result.out.strip().splitlines()[-1]
    assert "params 0.85M" in total and "FLOPs 0.25G" in total
    assert "layer3.8.conv2" in result.out and "64x8x8" in result.out
    listing = run_cli("info")
    assert "resnet56" in listing.out and "mnist_subset" in listing.out


def test_help_and_version(run_cli) -> None:
    for command in ([], ["train"], ["eval"], ["info"]):
        result = run_cli(*command, "--help")
        assert result.code == 0 and "usage: tpp" in result.out
    assert "(default: 128)" in run_cli("train", "--help").out
    assert run_cli("--version").code == 0


def test_subprocess_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tpp",
            "train",
            "--model",
            "not_a_model",
            "--dataset",
            "mnist_subset",
            "--out",
            tmp_path / "o",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tpp: error: ") and "not_a_model" in lines[0]
    assert "Traceback" not in done.stderr and not (tmp_path / "o").exists()


def test_keyboard_interrupt_exits_130(run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tpp.training import Trainer

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", interrupted)
    result = run_cli("train", *QUICK, "--epochs", "1", "--out", tmp_path / "r")
    assert result.code == 130 and result.err_lines == [
        f"tpp: interrupted; resume with: tpp train --out {tmp_path / 'r'} --resume"
    ]
    monkeypatch.undo()
    resumed = run_cli("train", "--out", tmp_path / "r", "--resume")  # the printed command, as it is
    assert resumed.code == 0 and "after 1 epochs" in resumed.out, resumed.err


def test_info_and_eval_of_pruned_checkpoints(run_cli, tmp_path: Path) -> None:
    import tpp.checkpoints as serialization
    import tpp.pruning.methods.l1 as l1
    from tpp.models import example_inputs

    model = create_model("resnet20", in_channels=1)
    pruned = l1.L1Pruner(model, example_inputs(model), ratio=0.5).prune()
    save_checkpoint(tmp_path / "train_format.pt", make_payload(pruned, config={"dataset": "mnist_subset"}))
    serialization.save_pruned(pruned, tmp_path / "pruned_format.pt")
    full = run_cli("info", "--model", "resnet20", "--in-channels", "1").out.splitlines()[-1]
    for name in ("train_format.pt", "pruned_format.pt"):
        info = run_cli("info", "--checkpoint", tmp_path / name)
        assert info.code == 0, info.err
        assert info.out.splitlines()[-1] != full and "FLOPs" in info.out
        evaluated = run_cli("eval", "--checkpoint", tmp_path / name, "--dataset", "mnist_subset")
        assert evaluated.code == 0 and "top-1" in evaluated.out, evaluated.err
