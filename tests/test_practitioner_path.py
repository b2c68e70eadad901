"""The practitioner's path end to end, as a new user walks it: their own CNN in a module of the
current folder, their images as PNGs (real MNIST digits, ``digit_folder``), and an ``hf:`` folder.

Train -> prune -> eval / jsv / info with no data flag (the files record their data) -> a flag that
contradicts the record refused in one line -> Ctrl-C naming the exact resume command -> resume
with ``--out DIR --resume`` (and ``--model`` for a factory, which a file may not name) -> a run folder
that explains itself."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.user_model_zoo import data_args, one_line_error, top1

MODULE = textwrap.dedent("""
    from torch import nn

    def res_cnn(num_classes=10, in_channels=3):
        return nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))
""")
SPEC = "mymodels_practitioner:res_cnn"


@pytest.fixture()
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current folder holds the user's model module, as when they run ``tpp`` next to their code."""
    (tmp_path / "mymodels_practitioner.py").write_text(MODULE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_files_know_their_data_and_resume_needs_only_out(user_folder, digit_folder, run_cli, monkeypatch):
    trained = run_cli(
        "train",
        "--model",
        SPEC,
        *data_args(digit_folder),
        "--epochs",
        "2",
        "--lr",
        "cosine:0.1",
        "--batch-size",
        "32",
        "--out",
        "base",
        "--quiet",
    )
    assert trained.code == 0, trained.err
    # prune from the checkpoint alone: the model and the data (32x32 grayscale, mnist normalisation) are recorded
    import tpp.jobs.stages as stages

    calls = {"n": 0}
    real_finetune = stages.finetune

    def interrupted_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real_finetune(*args, **kwargs)

    monkeypatch.setattr(stages, "finetune", interrupted_once)
    stopped = run_cli(
        "prune",
        "--checkpoint",
        "base/best.pt",
        "--model",
        SPEC,
        "--method",
        "l1",
        "--ratio",
        "0.5",
        "--ft-epochs",
        "2",
        "--ft-lr",
        "0.01",
        "--batch-size",
        "32",
        "--out",
        "job",
        "--quiet",
    )
    hint = f"tpp prune --out job --resume --model {SPEC}"  # a file may not make tpp import the factory
    assert stopped.code == 130 and stopped.err_lines == [f"tpp: interrupted; resume with: {hint}"]
    assert Path("job/pruned.pt").is_file() and not Path("job/report.json").exists()
    one_line_error(run_cli("prune", "--out", "job", "--resume"), f"may not make tpp import code: resume with {hint}")
    resumed = run_cli(*hint.split()[1:])  # the printed command; every other option comes from job/config.json
    assert resumed.code == 0, resumed.err
    report = json.loads(Path("job/report.json").read_text())
    assert report["finetune"]["epochs"] == 2 and report["config"]["ratio"] == 0.5
    assert "2 fine-tuning epochs" in resumed.out and "final model job/pruned_model.pt (last epoch)" in resumed.out
    for name in ("pruned_model.pt", "README.txt", "curves.png", "layers.png"):
        assert Path("job", name).is_file(), name
    guide = Path("job/README.txt").read_text()
    assert f"tpp eval --checkpoint job/pruned_model.pt --model {SPEC}" in guide and f"resume:    {hint}" in guide

    # eval, jsv and info of the pruned file with no data flag: the 32x32 grayscale inputs it was trained on
    evaluated = run_cli("eval", "--checkpoint", "job/pruned_model.pt", "--model", SPEC)
    assert evaluated.code == 0, evaluated.err
    assert top1(evaluated.out) == pytest.approx(report["finetune"]["last_top1"], abs=0.01)
    assert "300 imagefolder test images" in evaluated.out
    jsv = run_cli("jsv", "--checkpoint", "job/pruned_model.pt", "--model", SPEC, "--json")
    assert jsv.code == 0 and json.loads(jsv.out)["mean"] > 0, jsv.err
    info = run_cli("info", "--checkpoint", "job/pruned_model.pt", "--model", SPEC, "--json")
    assert info.code == 0 and json.loads(info.out)["input_shape"] == [1, 1, 32, 32], info.err

    # a flag that prepares the inputs otherwise is refused, naming the flag and the recorded value
    one_line_error(
        run_cli("eval", "--checkpoint", "job/pruned_model.pt", "--model", SPEC, "--image-size", "224"),
        "--image-size",
        "input size 32 in the record, 224 now",
    )
    one_line_error(
        run_cli("eval", "--checkpoint", "job/pruned_model.pt", "--model", SPEC, "--normalize", "half"),
        "--normalize",
        "normalisation mean [0.1307] in the record",
    )
    one_line_error(
        run_cli("eval", "--checkpoint", "job/pruned_model.pt", "--model", SPEC, "--dataset", "cifar10"),
        "trained on imagefolder (1-channel 32x32 images, 10 classes)",
        "--dataset",
    )
    for command in (("info",), ("export", "--out", "m.onnx"), ("bench", "latency")):
        one_line_error(
            run_cli(*command, "--checkpoint", "job/pruned_model.pt", "--model", SPEC, "--image-size", "64"),
            "trained on imagefolder (1-channel 32x32 images, 10 classes), not --image-size 64",
        )
    timed = run_cli(
        "bench",
        "latency",
        "--checkpoint",
        "job/pruned_model.pt",
        "--model",
        SPEC,
        "--batch-sizes",
        "1",
        "--repeats",
        "2",
        "--backends",
        "torch",
    )
    assert timed.code == 0 and "input 1x32x32" in timed.out, timed.err  # the recorded size, not a guess

    # tpp's own config.json is a valid --config file (null entries and run records are skipped)
    planned = run_cli("prune", "--config", "job/config.json", "--out", "other", "--dry-run")
    assert planned.code == 0, planned.err
    assert "l1 would remove" in planned.out and "2 fine-tuning epochs" in planned.out
    assert "ms per training step" in planned.out and not Path("other").exists()


def test_dry_run_states_the_schedule_and_fast_shortens_it(user_folder, digit_folder, run_cli):
    args = (
        "prune",
        "--model",
        SPEC,
        "--weights",
        "w.pt",
        *data_args(digit_folder),
        "--method",
        "tpp",
        "--ratio",
        "0.5",
        "--dry-run",
    )
    import torch

    from tpp.models import build_model

    torch.save(build_model(SPEC, num_classes=10, in_channels=1).state_dict(), "w.pt")
    paper = run_cli(*args)
    assert paper.code == 0, paper.err
    assert "110,000 regularisation iterations" in paper.out and "120 fine-tuning epochs" in paper.out
    assert "--fast shortens the regularisation 10x" in paper.out
    fast = run_cli(*args, "--fast")
    assert fast.code == 0 and "11,000 regularisation iterations" in fast.out, fast.err
    assert "prune() before" not in paper.err + fast.err  # the preview removes at once on purpose


def test_a_model_that_needs_another_image_size_is_told_so(user_folder, digit_folder, run_cli):
    from transformers import ViTConfig

    folder = user_folder / "vit"
    ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=1,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=10,
    ).save_pretrained(folder)
    data = [a for a in data_args(digit_folder) if a not in ("--image-size", "32")]
    result = run_cli("train", "--model", f"hf:{folder}", *data, "--epochs", "1", "--out", "vit-run", "--quiet")
    one_line_error(result, "the images are 1-channel 224x224: pass the --image-size (and --channels) the model takes")
    trained = run_cli(
        "train",
        "--model",
        f"hf:{folder}",
        *data,
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--train-subset",
        "300",
        "--batch-size",
        "32",
        "--out",
        "vit-run",
        "--quiet",
    )
    assert trained.code == 0, trained.err
    # from here on the files say everything: no --model, no data flag
    pruned = run_cli(
        "prune",
        "--checkpoint",
        "vit-run/best.pt",
        "--method",
        "l1",
        "--ratio",
        "0.5",
        "--ft-epochs",
        "1",
        "--train-subset",
        "300",
        "--batch-size",
        "32",
        "--jsv-batches",
        "0",
        "--out",
        "vit-job",
        "--quiet",
    )
    assert pruned.code == 0, pruned.err
    report = json.loads(Path("vit-job/report.json").read_text())
    assert report["counts_after"]["params"] < report["counts_before"]["params"]
    evaluated = run_cli("eval", "--checkpoint", "vit-job/pruned_model.pt")
    assert evaluated.code == 0 and top1(evaluated.out) == pytest.approx(report["finetune"]["last_top1"], abs=0.01)


def test_an_adaptive_schedule_cut_short_says_so_on_the_console(user_folder, digit_folder, run_cli):
    import torch

    from tpp.models import build_model

    torch.save(build_model(SPEC, num_classes=10, in_channels=1).state_dict(), "w.pt")
    result = run_cli(
        "prune",
        "--model",
        SPEC,
        "--weights",
        "w.pt",
        *data_args(digit_folder),
        "--method",
        "tpp-adaptive",
        "--ratio",
        "0.5",
        "--max-iterations",
        "3",
        "--check-interval",
        "1",
        "--ft-epochs",
        "0",
        "--jsv-batches",
        "0",
        "--train-subset",
        "200",
        "--out",
        "adaptive",
        "--quiet",
    )
    assert result.code == 0, result.err
    warning = [line for line in result.err_lines if "max_iterations" in line]
    assert warning == [warning[0]] and warning[0].startswith(
        "tpp: warning: the adaptive regularisation stopped at max_iterations=3 before every pruned unit was small"
    )
    assert "raise --max-iterations" in warning[0] and ".py:" not in result.err  # one line, no source path


@pytest.mark.parametrize(
    "record, entry",
    [
        ({"dataset": "imagefolder", "image_size": "abc"}, "image_size=abc"),
        ({"dataset": "imagefolder", "mean": "x"}, "mean=x"),
        ({"dataset": "imagefolder", "classes": 5}, "classes=5"),
        ({"dataset": "imagefolder", "data_dir": ["a"]}, "data_dir=[a]"),
        ({"dataset": "text_tiny", "seq_len": -1}, "seq_len=-1"),
        ({"dataset": "mnist", "channels": True}, "channels=True"),
    ],
)
def test_a_malformed_data_record_is_one_line(record, entry, run_cli, tmp_path):
    from tpp.checkpoints import make_payload, save_checkpoint
    from tpp.models import create_model

    model = create_model("mlp7_linear", in_channels=1)
    save_checkpoint(tmp_path / "f.pt", {**make_payload(model), "tpp_data": record})
    for command in ("eval", "jsv", "info"):
        one_line_error(run_cli(command, "--checkpoint", tmp_path / "f.pt"), f"malformed data entry {entry}")


def test_a_job_that_failed_before_its_first_result_can_be_rerun_in_its_folder(user_folder, digit_folder, run_cli):
    import torch

    from tpp.models import build_model

    torch.save(build_model(SPEC, num_classes=10, in_channels=1).state_dict(), "w.pt")
    args = (
        "prune",
        "--model",
        SPEC,
        "--weights",
        "w.pt",
        *data_args(digit_folder),
        "--method",
        "l1",
        "--ft-epochs",
        "0",
        "--jsv-batches",
        "0",
        "--train-subset",
        "100",
        "--out",
        "job",
        "--quiet",
    )
    one_line_error(run_cli(*args, "--ratio", "nothing*:0.5"), "matches no prunable layer")
    assert sorted(p.name for p in Path("job").iterdir()) == [".tpp-run", "config.json", "meta.json"]
    fixed = run_cli(*args, "--ratio", "0.5")  # no --overwrite needed: nothing was computed there
    assert fixed.code == 0 and Path("job/report.json").is_file(), fixed.err
    assert json.loads(Path("job/config.json").read_text())["ratio"] == "0.5"
    one_line_error(run_cli(*args, "--ratio", "0.25"), "already exists and is not empty")  # a result is kept
