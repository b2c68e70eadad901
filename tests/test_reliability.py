"""Bad input is refused before any work, in one true line; files tpp did not write are left alone;
a run killed between its checkpoint writes resumes to consistent files."""

from __future__ import annotations

import json
import pickle
import posix
import shutil
from pathlib import Path

import pytest
import torch

from tpp.checkpoints import load_checkpoint
from tpp.cli.main import main
from tpp.training import Trainer

DATA = ["--dataset", "mnist_subset"]
SHORT_TPP = ["--reg-step", "0.5", "--reg-interval", "1", "--stabilize-iters", "2", "--zero-out-interval", "1"]


def _one_line(run_cli, *args) -> str:
    result = run_cli(*args)
    assert result.code == 2, (result.code, result.err)
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("tpp: error: "), result.err
    return result.err_lines[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """last.pt of a 1-epoch mlp7_linear on the embedded MNIST subset."""
    out = tmp_path_factory.mktemp("base") / "run"
    assert (
        main(
            [
                "train",
                "--model",
                "mlp7_linear",
                *DATA,
                "--epochs",
                "1",
                "--train-subset",
                "500",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    return out / "last.pt"


@pytest.fixture(scope="module")
def pruned_job(tmp_path_factory, base) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("job") / "job"
    argv = [
        "prune",
        "--method",
        "tpp",
        "--model",
        "mlp7_linear",
        *DATA,
        "--checkpoint",
        str(base),
        "--ratio",
        "0.5",
        *SHORT_TPP,
        "--train-subset",
        "500",
        "--ft-epochs",
        "1",
        "--ft-lr",
        "0.01",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    return out, argv


# ------------------------------------------------------------------ 1. a kill between last.pt and best.pt


def test_resume_repairs_best_pt_and_metrics_after_a_kill_between_the_writes(tmp_path, monkeypatch):
    argv = [
        "train",
        "--model",
        "mlp7_linear",
        *DATA,
        "--train-subset",
        "300",
        "--batch-size",
        "100",
        "--epochs",
        "2",
        "--lr",
        "0.05",
        "--quiet",
    ]
    assert main([*argv, "--out", str(tmp_path / "full")]) == 0
    # the same run, dying right after the last epoch's last.pt (the commit) is on disk
    save = Trainer._save

    def die_after_last(self, improved):
        if self.start_epoch < 2:
            return save(self, improved)
        save(self, improved=False)  # the last epoch's last.pt only
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save", die_after_last)
    killed = tmp_path / "killed"
    assert main([*argv, "--out", str(killed)]) == 130
    (killed / ".best.pt.abcd1234.tmp").write_bytes(b"half a checkpoint")  # an interrupted write
    monkeypatch.setattr(Trainer, "_save", save)
    assert main([*argv, "--out", str(killed), "--resume"]) == 0
    full = tmp_path / "full"
    assert load_checkpoint(full / "best.pt")["epoch"] == 2  # the last epoch was the best: best.pt was due
    for name in ("best.pt", "last.pt"):
        ours, theirs = load_checkpoint(killed / name), load_checkpoint(full / name)
        assert ours["epoch"] == theirs["epoch"] and ours["best_top1"] == theirs["best_top1"]
        assert all(torch.equal(ours["model"][k], theirs["model"][k]) for k in theirs["model"])
    records = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    assert sorted(p.name for p in killed.iterdir()) == sorted(p.name for p in full.iterdir())  # no .tmp left


def test_resume_of_a_finished_prune_job_changes_nothing(run_cli, pruned_job):
    out, argv = pruned_job
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "meta.json"}
    report = json.loads((out / "report.json").read_text())
    assert report["finetune"]["last_top5"] is not None
    result = run_cli(*argv, "--resume")
    assert result.code == 0 and "finished job; nothing to redo" in result.out
    assert {p: p.read_bytes() for p in before} == before
    line = _one_line(run_cli, *argv, "--resume", "--seed", "3")
    assert "was run with --seed 0, not 3" in line
    # method options are compared too, whichever method declares them (given then, or given now)
    line = _one_line(run_cli, *argv, "--resume", "--gram-weight", "5")
    assert "was run without --gram-weight (its default), not 5.0" in line


# ------------------------------------------------------------------ 2, 3. unreadable and malicious files


class _System:
    def __reduce__(self):
        return posix.system, ("touch /nonexistent-dir/tpp-sentinel",)


def test_text_file_and_malicious_pickle_as_checkpoint(run_cli, tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello world\n")  # made torch's unpickler raise KeyError: 101
    line = _one_line(run_cli, "eval", "--checkpoint", text, *DATA)
    assert f"{text} is not a readable tpp checkpoint" in line
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"model": _System()}, protocol=2))
    line = _one_line(run_cli, "eval", "--checkpoint", evil, *DATA)
    assert "holds pickled code (it would call posix.system) that tpp will not run" in line
    assert "corrupt" not in line


def test_a_flipped_bit_in_a_tensor_is_found(run_cli, base, tmp_path):
    data = bytearray(base.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside fc weights: torch alone would load a wrong weight silently
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(bytes(data))
    assert "checksum mismatch" in _one_line(run_cli, "eval", "--checkpoint", damaged, *DATA)


# ------------------------------------------------------------------ 4. options checked before any work


@pytest.mark.parametrize(
    "args, words",
    [
        (["--ratio", "0.5", "--ft-epochs", "-1"], "argument --ft-epochs: expected a number >= 0, got -1"),
        (["--ratio", "0.5", "--jsv-batches", "-1"], "argument --jsv-batches"),
        (["--ratio", "0.5", "--global-ratio", "0.5"], "--ratio and --global-ratio both set how much to prune"),
        (["--ratio", "fc1:0.5,"], "empty entry in ratio 'fc1:0.5,'"),
        (
            ["--global-ratio", "1"],
            "argument --global-ratio: expected the fraction of channels to prune, in [0, 1), got 1",
        ),
        (["--ratio", "0.5", "--prune-lr", "0"], "argument --prune-lr: expected a finite number > 0, got 0"),
        (["--ratio", "0.5", "--speedup", "2"], "--ratio 0.5 and --speedup both set how much to prune"),
        (["--ratio", "0.5", "--ft-lr", "5:0.1"], "--ft-lr: invalid LR schedule"),
        (["--ratio", "nothing*:0.5", "--dry-run"], "matches no prunable layer"),
    ],
)
def test_prune_options_are_refused_before_any_work(run_cli, base, tmp_path, args, words):
    out = tmp_path / "job"
    line = _one_line(
        run_cli,
        "prune",
        "--model",
        "mlp7_linear",
        *DATA,
        "--checkpoint",
        base,
        *SHORT_TPP,
        "--out",
        out,
        "--quiet",
        *args,
    )
    assert words in line, line
    assert not out.exists()


def test_prune_dry_run_reads_checkpoint_and_data_and_writes_nothing(run_cli, base, tmp_path):
    out = tmp_path / "job"
    common = ["prune", "--model", "mlp7_linear", *DATA, "--ratio", "0.5", "--out", out, "--dry-run"]
    result = run_cli(*common, "--checkpoint", base)
    assert result.code == 0 and "dry run:" in result.out and "FLOPs speedup" in result.out and not out.exists()
    broken = tmp_path / "broken.pt"
    broken.write_bytes(base.read_bytes()[:1000])
    assert "not a readable tpp checkpoint" in _one_line(run_cli, *common, "--checkpoint", broken)
    assert not out.exists()


def test_recipe_dry_run_reports_its_inputs(run_cli, tmp_path):
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "mnist_mlp7_linear.yaml"
    result = run_cli("run", recipe, "--dry-run", "--data-dir", tmp_path / "nothing", "--out", tmp_path / "o")
    assert result.code == 0 and "data: mnist cannot be read here" in result.out
    garbage = tmp_path / "g.pt"
    garbage.write_bytes(b"\0" * 10)
    assert "not a readable tpp checkpoint" in _one_line(
        run_cli, "run", recipe, "--dry-run", "--checkpoint", garbage, "--out", tmp_path / "o"
    )


# ------------------------------------------------------------------ 5. tracebacks


def test_model_and_input_mismatches_are_one_line(run_cli, pruned_job):
    out, _ = pruned_job
    line = _one_line(run_cli, "eval", "--checkpoint", out / "pruned_model.pt", "--dataset", "cifar10")
    assert "trained on mnist_subset (1-channel 32x32 images, 10 classes), and --dataset gives other inputs" in line
    line = _one_line(run_cli, "info", "--model", "mlp7_linear", "--image-size", "7")
    assert "mlp7_linear cannot take an input of shape [1, 3, 7, 7]" in line
    line = _one_line(run_cli, "info", "--model", "resnet20", "--image-size", "100000")
    assert "more than this machine can spare" in line


# ------------------------------------------------------------------ 6. nonsense accepted silently


def test_duplicate_yaml_keys_and_escaping_recipe_names(run_cli, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 2\nlr: 0.1\nlr: 0.01\n")
    line = _one_line(run_cli, "train", "--config", config, "--model", "mlp7_linear", *DATA)
    assert "found duplicate key 'lr' at line 3" in line
    recipe_text = (Path(__file__).resolve().parents[1] / "recipes" / "mnist_mlp7_linear.yaml").read_text()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_text + "\nseeds: [4]\n")
    assert "duplicate key 'seeds'" in _one_line(run_cli, "run", recipe, "--dry-run")
    recipe.write_text(recipe_text.replace("name: mnist_mlp7_linear", "name: ../../escaped"))
    assert "must be a plain folder name" in _one_line(run_cli, "run", recipe, "--dry-run")


def test_a_global_ratio_job_is_labelled_as_global():
    from tpp.reporting.collect import ratio_text

    assert ratio_text(0.5, 0.5) == "global 0.5" and ratio_text(0.5) == "0.5"


# ------------------------------------------------------------------ 7. files tpp did not write


def test_report_out_refuses_a_file_tpp_did_not_write(run_cli, pruned_job, tmp_path):
    out, _ = pruned_job
    mine = tmp_path / "notes.md"
    mine.write_text("# my notes\n")
    line = _one_line(run_cli, "report", out, "--out", mine)
    assert "was not written by tpp" in line and "--overwrite" in line
    assert mine.read_text() == "# my notes\n"
    ours = tmp_path / "report.md"
    assert run_cli("report", out, "--out", ours).code == 0
    assert run_cli("report", out, "--out", ours).code == 0  # its own file: replaced
    assert run_cli("report", out, "--out", mine, "--overwrite").code == 0 and "generated by tpp" in mine.read_text()


def test_export_and_bench_refuse_a_file_tpp_did_not_write(run_cli, pruned_job, tmp_path):
    pytest.importorskip("onnx")
    out, _ = pruned_job
    mine = tmp_path / "model.onnx"
    mine.write_bytes(b"my own model")
    assert "was not written by tpp" in _one_line(
        run_cli, "export", "--checkpoint", out / "pruned_model.pt", "--out", mine
    )
    assert mine.read_bytes() == b"my own model"
    ours = tmp_path / "ours.onnx"
    for _ in range(2):  # the second export replaces the first, which tpp wrote
        assert run_cli("export", "--checkpoint", out / "pruned_model.pt", "--out", ours).code == 0
    results = tmp_path / "results.json"
    results.write_text("{}")
    assert "was not written by tpp" in _one_line(run_cli, "bench", "latency", "--model", "resnet20", "--out", results)


def test_resume_refuses_a_folder_tpp_did_not_write(run_cli, base, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("x")
    line = _one_line(
        run_cli,
        "prune",
        "--model",
        "mlp7_linear",
        *DATA,
        "--checkpoint",
        base,
        "--ratio",
        "0.5",
        "--out",
        folder,
        "--resume",
    )
    assert "not a tpp run directory" in line and (folder / "thesis.tex").read_text() == "x"
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.tex"]
    # another command's folder is not resumed either (a training run is not a pruning job)
    line = _one_line(
        run_cli,
        "prune",
        "--model",
        "mlp7_linear",
        *DATA,
        "--checkpoint",
        base,
        "--ratio",
        "0.5",
        "--out",
        base.parent,
        "--resume",
    )
    assert "holds a `tpp train` run, not a pruning job" in line


# ------------------------------------------------------------------ 8. messages true for the CLI


def test_messages_name_the_cli_flags(run_cli, pruned_job, tmp_path):
    out, _ = pruned_job
    empty = tmp_path / "empty"
    empty.mkdir()
    line = _one_line(
        run_cli, "eval", "--checkpoint", out / "pruned_model.pt", "--dataset", "mnist", "--data-dir", empty
    )
    assert "pass --download" in line
    line = _one_line(run_cli, "export", "--checkpoint", out, "--out", tmp_path / "m.onnx")
    assert "is a directory" in line and str(out / "pruned_model.pt") in line
    recipe_text = (Path(__file__).resolve().parents[1] / "recipes" / "mnist_mlp7_linear.yaml").read_text()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_text.replace("methods: [l1, l1+orthp, tpp]", "methods: [l1, l1+orthp, tppp]"))
    assert "unknown pruning method 'tppp'" in _one_line(run_cli, "run", recipe, "--dry-run")


def test_trainer_checkpoint_carries_what_a_resume_needs(tmp_path):
    from tpp.training import RunDirectory

    run = RunDirectory(tmp_path / "r")
    run.log_epoch({"epoch": 0, "x": 1})
    run.recover_epoch({"epoch": 0, "x": 2})  # already there: kept as it was
    run.recover_epoch({"epoch": 1, "x": 3})
    assert [json.loads(line)["x"] for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()] == [1, 3]
    shutil.rmtree(tmp_path / "r")
