"""`tpp prune` end to end on real (embedded) MNIST: three stages, report, pruned model, resume, bad input."""

from __future__ import annotations

import json

import pytest
import torch

import tpp
from tests.prune_helpers import own_flags
from tpp.cli.main import main
from tpp.jobs.job_outputs import JobClock
from tpp.jobs.run_guide import run_guide
from tpp.reporting import plots
from tpp.util.owned import png_is_ours

SHORT = ["--reg-step", "0.05", "--reg-interval", "1", "--stabilize-iters", "20", "--zero-out-interval", "2"]


def _prune(pretrained, out, *extra):
    method = extra[extra.index("--method") + 1] if "--method" in extra else "tpp"
    return main(
        [
            "prune",
            "--model",
            "mlp7_linear",
            "--dataset",
            "mnist_subset",
            "--checkpoint",
            str(pretrained),
            "--ratio",
            "0.5",
            *own_flags(method, SHORT),
            "--ft-epochs",
            "1",
            "--ft-lr",
            "0.001",
            "--out",
            str(out),
            "--quiet",
            *extra,
        ]
    )


def test_prune_writes_report_and_a_loadable_pruned_model(pretrained, tmp_path):
    out = tmp_path / "job"
    assert _prune(pretrained, out) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["counts_after"]["params"] < report["counts_before"]["params"]
    assert report["speedup"] > 1.5
    for key in ("accuracy_before", "accuracy_after_removal"):
        assert 0 <= report[key]["top1"] <= 100
    assert report["finetune"]["best_top1"] is not None and report["finetune"]["last_top1"] is not None
    assert report["regularization"]["final_lambda"] == 1.0
    model = tpp.load_pruned(out / "pruned_model.pt")
    assert model.fc1.out_features == 50
    # TPP removal is function-preserving: accuracy right after removal equals the end of regularisation
    stages = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last_regularised = [r for r in stages if r["stage"] == "regularize"][-1]
    assert abs(last_regularised["test_top1"] - report["accuracy_after_removal"]["top1"]) < 1e-9
    # the folder shows and explains itself
    assert report["layers"] == [{"name": f"fc{i}", "channels": 100, "pruned": 50} for i in range(1, 7)]
    assert [r["epoch"] for r in report["regularization"]["history"]] == list(range(report["regularization"]["epochs"]))
    for plot in ("curves.png", "layers.png"):
        assert png_is_ours(out / plot) and (out / plot).stat().st_size > 1000
    guide = (out / "README.txt").read_text()
    top1 = report["finetune"]["last_top1"]
    assert f"pruned_model.pt  the fine-tuned pruned model: last fine-tuning epoch 1 of 1, top-1 {top1:.2f}" in guide
    assert "finetune/best.pt holds it" in guide and "fc1: 50 of 100" in guide
    assert f"tpp eval --checkpoint {out / 'pruned_model.pt'}" in guide and "--resume" in guide
    assert "jsv.png" not in guide  # only the files that are there


def test_jsv_is_logged_after_removal_and_every_epoch(pretrained, tmp_path):
    out = tmp_path / "job"
    assert _prune(pretrained, out, "--jsv-every-epoch", "--ft-epochs", "2") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["jsv_after_prune"]["mean"] > 0
    assert [("jsv_mean" in h) for h in report["finetune"]["history"]] == [True, True]
    assert (out / "jsv.png").stat().st_size > 1000


def test_prune_resumes_a_killed_job_after_removal(pretrained, tmp_path):
    out = tmp_path / "job"
    assert _prune(pretrained, out) == 0
    first = json.loads((out / "report.json").read_text())
    (out / "report.json").unlink()
    (out / "pruned_model.pt").unlink()
    assert _prune(pretrained, out, "--resume") == 0  # picks up pruned.pt and the finished fine-tune
    second = json.loads((out / "report.json").read_text())
    assert second["counts_after"] == first["counts_after"]
    assert second["finetune"]["last_top1"] == first["finetune"]["last_top1"]
    # what earlier processes recorded survives the resume
    assert second["regularization"] == first["regularization"]
    assert second["pruned_indices"] == first["pruned_indices"]
    assert second["finetune"]["history"] == first["finetune"]["history"]
    assert second["layers"] == first["layers"]
    assert second["wall_seconds"] >= first["wall_seconds"]  # the first process's time is counted


def test_prune_resume_mid_finetune_keeps_the_whole_history(pretrained, tmp_path):
    out = tmp_path / "job"
    assert _prune(pretrained, out) == 0  # 1 fine-tuning epoch, as if killed after it
    first = json.loads((out / "report.json").read_text())
    assert _prune(pretrained, out, "--resume", "--ft-epochs", "3") == 0
    report = json.loads((out / "report.json").read_text())
    assert [h["epoch"] for h in report["finetune"]["history"]] == [0, 1, 2]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    stages = [r["stage"] for r in records]
    assert stages.count("finetune") == 3 and "regularize" in stages
    # wall time adds up: the first process's, then at least the two epochs the second one trained
    added = sum(r["time"] for r in records if r["stage"] == "finetune" and r["epoch"] > 0)
    assert report["wall_seconds"] >= first["wall_seconds"] + added
    assert "last fine-tuning epoch 3 of 3" in (out / "README.txt").read_text()


@pytest.mark.parametrize("method", ["l1", "tpp"])
def test_every_method_runs_from_the_cli(pretrained, tmp_path, method):
    assert _prune(pretrained, tmp_path / method, "--method", method) == 0


@pytest.mark.parametrize(
    "args, words",
    [
        (["--ratio", "1.5"], "impossible pruning ratio"),
        (["--ratio", "*nothing*:0.5"], "matches no prunable layer"),
        (["--ft-lr", "60:0.1,0:0.01"], "schedule"),
        (["--checkpoint", "/nonexistent/base.pt"], "not found|does not exist|No such"),
    ],
)
def test_bad_prune_input_is_one_line(pretrained, tmp_path, capsys, args, words):
    code = main(
        [
            "prune",
            "--model",
            "mlp7_linear",
            "--dataset",
            "mnist_subset",
            "--checkpoint",
            str(pretrained),
            "--ratio",
            "0.5",
            "--out",
            str(tmp_path / "x"),
            "--quiet",
            *args,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    import re

    assert re.search(words, err)


def test_checkpoint_of_another_architecture_is_refused(tmp_path, capsys):
    torch.save(tpp.create_model("resnet20").state_dict(), tmp_path / "other.pt")
    code = main(
        [
            "prune",
            "--model",
            "mlp7_linear",
            "--dataset",
            "mnist_subset",
            "--checkpoint",
            str(tmp_path / "other.pt"),
            "--ratio",
            "0.5",
            "--out",
            str(tmp_path / "x"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "architecture" in err


def test_speedup_target_picks_the_ratio(pretrained, tmp_path):
    out = tmp_path / "job"
    assert (
        main(
            [
                "prune",
                "--model",
                "mlp7_linear",
                "--dataset",
                "mnist_subset",
                "--checkpoint",
                str(pretrained),
                "--speedup",
                "2.0",
                *SHORT,
                "--ft-epochs",
                "0",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert abs(report["speedup"] / 2.0 - 1) <= 0.02


def test_orthconv_geometry_and_jsv_protocol_are_reachable_and_reported(pretrained, tmp_path):
    """The official OrthConv geometry and the paper's train-mode JSV can be asked for, and the report
    says which were used."""
    out = tmp_path / "orthconv"
    code = main(
        [
            "prune",
            "--method",
            "orthconv+l1",
            "--model",
            "mlp7_linear",
            "--dataset",
            "mnist_subset",
            "--checkpoint",
            str(pretrained),
            "--ratio",
            "0.5",
            "--orth-iters",
            "2",
            "--orthconv-geometry",
            "official",
            "--ft-epochs",
            "1",
            "--ft-lr",
            "0.001",
            "--jsv-mode",
            "train",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["method_options"] == {"orth_iters": 2, "orth_weight": 0.1, "orthconv_geometry": "official"}
    assert report["config"]["jsv_mode"] == "train" and report["jsv_after_prune"]["mean"] > 0
    # orthconv+l1 chooses at removal: the report names what was removed, not the choice before regularising
    model = tpp.load_pruned(out / "pruned_model.pt")
    for row in report["layers"]:
        assert getattr(model, row["name"]).out_features == row["channels"] - row["pruned"]
        assert row["pruned"] == len(report["pruned_indices"][row["name"]])
    out = tmp_path / "l1orthconv"
    assert _prune(pretrained, out, "--method", "l1+orthconv", "--orthconv-geometry", "official") == 0
    assert json.loads((out / "report.json").read_text())["method_options"] == {"orthconv_geometry": "official"}


def test_an_option_of_another_method_is_one_line_naming_its_owners(pretrained, tmp_path, capsys):
    for args, owners in (
        (["--method", "l1", "--gram-weight", "5"], "--gram-weight is an option of tpp, tpp-adaptive;"),
        (
            ["--method", "kernorth+l1", "--orthconv-geometry", "official"],
            "--orthconv-geometry is an option of l1+orthconv, orthconv+l1;",
        ),
        (["--method", "tpp", "--orth-iters", "5"], "--orth-iters is an option of kernorth+l1, orthconv+l1;"),
    ):
        code = main(
            [
                "prune",
                "--model",
                "mlp7_linear",
                "--dataset",
                "mnist_subset",
                "--checkpoint",
                str(pretrained),
                "--ratio",
                "0.5",
                "--out",
                str(tmp_path / "x"),
                *args,
            ]
        )
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and owners in err, err
        assert not (tmp_path / "x").exists()  # refused before any work


def test_a_failing_plot_never_fails_the_job(pretrained, tmp_path, monkeypatch, capsys):
    def broken(report, path):
        raise RuntimeError("no display\nat all")

    monkeypatch.setattr(plots, "plot_job_curves", broken)
    out = tmp_path / "job"
    assert _prune(pretrained, out, "--method", "l1") == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    assert warnings == [
        f"tpp: warning: {out / 'curves.png'} not drawn (no display at all); report.json holds its numbers"
    ]
    assert (out / "report.json").is_file() and (out / "layers.png").is_file() and not (out / "curves.png").exists()
    assert "curves.png" not in (out / "README.txt").read_text()


def test_job_clock_adds_the_seconds_of_the_latest_commit_it_loads():
    clock = JobClock()
    clock.load_state_dict({"wall_seconds": 100.0})
    clock.load_state_dict({"wall_seconds": 40.0})  # an earlier commit (pruned.pt before finetune/last.pt)
    for damaged in ({"wall_seconds": float("nan")}, {"wall_seconds": "1e9"}, {}, None):
        clock.load_state_dict(damaged)
    assert 100.0 <= clock.seconds() < 110.0 and clock.state_dict()["wall_seconds"] >= 100.0


def _language_report(ft_history):
    return {
        "method": "tpp",
        "config": {"ft_epochs": len(ft_history)},
        "accuracy_before": {"top1": 40.0, "perplexity": 14.0},
        "accuracy_after_removal": {"top1": 20.0, "perplexity": 900.0},
        "counts_before": {"params": 1000},
        "counts_after": {"params": 600},
        "speedup": 1.5,
        "pruned_indices": {"mlp": [0, 1]},
        "layers": [
            {"name": "mlp", "channels": 8, "pruned": 2},
            {"name": "attn", "channels": 4, "pruned": 0, "heads": True},
        ],
        "regularization": {
            "epochs": 2,
            "history": [{"epoch": e, "train_loss": 3.0, "test_top1": 39.0, "test_perplexity": 15.0} for e in range(2)],
        },
        "finetune": {"epochs": len(ft_history), "history": ft_history},
    }


def test_the_guide_names_the_last_epoch_as_the_final_model_and_the_best_apart(tmp_path):
    history = [
        {"epoch": 0, "train_loss": 3.1, "test_top1": 35.0, "test_perplexity": 16.0},
        {"epoch": 1, "train_loss": 3.0, "test_top1": 38.5, "test_perplexity": 15.0},
        {"epoch": 2, "train_loss": 2.9, "test_top1": 38.0, "test_perplexity": 14.5},
    ]
    guide = run_guide(tmp_path / "job", _language_report(history), present=["pruned_model.pt", "finetune/best.pt"])
    assert "last fine-tuning epoch 3 of 3, perplexity 14.500 (next-token top-1 38.00)" in guide
    assert (
        "best fine-tuning epoch was 2, perplexity 15.000 (next-token top-1 38.50); finetune/best.pt holds it" in guide
    )
    assert "mlp: 2 of 8" in guide and "attn" not in guide and "--format hf" in guide
    assert "curves.png" not in guide  # not present
    untuned = run_guide(tmp_path, {**_language_report([]), "config": {"ft_epochs": 0}}, present=[])
    assert "the pruned model right after removal (no fine-tuning epochs), perplexity 900.000" in untuned


def test_job_plots_draw_a_language_model_and_skip_what_is_missing(tmp_path):
    report = _language_report([{"epoch": 0, "train_loss": 3.0, "test_top1": 38.0, "test_perplexity": 15.0}])
    assert plots.plot_job_curves(report, tmp_path / "curves.png").stat().st_size > 1000
    assert plots.plot_pruned_layers(report, tmp_path / "layers.png").stat().st_size > 1000
    empty = {**report, "layers": [], "regularization": {}, "finetune": {"history": []}}
    assert plots.plot_job_curves(empty, tmp_path / "none.png") is None
    assert plots.plot_pruned_layers(empty, tmp_path / "none.png") is None
