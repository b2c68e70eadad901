"""Reporting: aggregation over seeds (mean, population std), tables, plots and the CLI, on
synthetic report.json files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tpp.errors import ConfigError
from tpp.reporting import aggregate, collect, mean_std, paper_table, summary_table, write_report
from tpp.reporting.language import language_model_table


def _job(
    root: Path,
    method: str,
    ratio: float,
    lr: str,
    seed: int,
    best: float,
    *,
    jsv: float | None = None,
    model: str | None = None,
    dataset: str | None = None,
    before: float = 93.0,
    name: str | None = None,
) -> Path:
    folder = root / (name or f"{method}__r{ratio}__lr{lr}__s{seed}")
    folder.mkdir(parents=True)
    history = [
        {
            "epoch": e,
            "lr": float(lr),
            "train_loss": 1.0 / (e + 1),
            "test_top1": best - 2 + e,
            "best_top1": best - 2 + e,
            **({"jsv_mean": 1.0 + e} if jsv is not None else {}),
        }
        for e in range(3)
    ]
    report = {
        "method": method,
        "config": {"method": method, "ratio": ratio, "ft_lr": f"0:{lr},30:{float(lr) / 10:g}"},
        "accuracy_before": {"top1": before},
        "accuracy_after_removal": {"top1": 10.0 + seed},
        "counts_before": {"params": 1000, "macs": 500, "flops": 1000},
        "counts_after": {"params": 500, "macs": 250, "flops": 500},
        "speedup": 2.0,
        "params_reduction": 0.5,
        "finetune": {"epochs": 3, "best_top1": best, "last_top1": best - 0.5, "history": history},
        "wall_seconds": 1.0,
    }
    if jsv is not None:
        report["jsv_after_prune"] = {"mean": jsv, "std": 0.1, "min": 0.0, "max": 1.0, "condition_number": 3.0}
    (folder / "report.json").write_text(json.dumps(report))
    settings = {"seed": seed, **({"model": model} if model else {}), **({"dataset": dataset} if dataset else {})}
    (folder / "config.json").write_text(json.dumps(settings))  # as `tpp prune` records its options
    return folder


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for seed, best in enumerate([93.21, 93.29, 93.47]):  # the paper's TPP PR 0.5 cell: 93.32 (0.11) from three runs
        _job(root, "tpp", 0.5, "0.001", seed, best, jsv=3.0 + seed)
    for seed, best in enumerate([90.0, 91.0]):
        _job(root, "l1", 0.5, "0.001", seed, best)
    _job(root / "nested" / "deeper", "l1", 0.5, "0.01", 0, 92.0)
    return root


def test_mean_std_is_the_population_std() -> None:
    mean, std, n = mean_std([93.21, 93.29, 93.47, None])
    assert n == 3 and round(mean, 2) == 93.32 and round(std, 2) == 0.11
    assert mean_std([]) == (None, None, 0)


def test_collect_walks_folders_and_reads_seeds(runs_root: Path) -> None:
    runs = collect([runs_root])
    assert len(runs) == 6
    assert {r["lr"] for r in runs} == {"0.001", "0.01"}
    assert sorted(r["seed"] for r in runs if r["method"] == "tpp") == [0, 1, 2]
    assert len(collect([runs_root / "nested" / "deeper" / "l1__r0.5__lr0.01__s0", runs_root])) == 6  # no duplicates


def test_collect_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        collect([tmp_path / "missing"])
    with pytest.raises(ConfigError, match="no report.json"):
        collect([tmp_path])


def test_aggregate_groups_by_method_ratio_lr(runs_root: Path) -> None:
    groups = {(g["method"], g["lr"]): g for g in aggregate(collect([runs_root]))}
    tpp = groups[("tpp", "0.001")]
    assert tpp["n"] == 3 and tpp["seeds"] == [0, 1, 2]
    assert tpp["best_top1"][0] == pytest.approx(93.3233, abs=1e-3)
    assert tpp["best_top1"][1] == pytest.approx(
        math.sqrt(((93.21 - 93.3233) ** 2 + (93.29 - 93.3233) ** 2 + (93.47 - 93.3233) ** 2) / 3), abs=1e-3
    )
    assert tpp["jsv_after_prune"] == (pytest.approx(4.0), pytest.approx(math.sqrt(2 / 3)))
    assert tpp["after_removal_top1"][0] == pytest.approx(11.0)
    l1 = groups[("l1", "0.001")]
    assert l1["best_top1"] == (pytest.approx(90.5), pytest.approx(0.5)) and l1["jsv_after_prune"] == (None, None)


def test_summary_and_paper_tables(runs_root: Path) -> None:
    runs = collect([runs_root])
    table = summary_table(runs)
    assert "93.32 ± 0.11" in table and "92.82 ± 0.11" in table  # best, last = best - 0.5
    assert "mean JSV after pruning" in table and "4.0000 ± 0.8165" in table and "2.00x" in table
    paper = paper_table(
        runs,
        [
            {"method": "tpp", "ratio": None, "lr": "0.001", "top1": 93.32, "top1_std": 0.11},
            {"method": "scratch", "ratio": "0.5", "lr": None, "top1": 92.78},
        ],
    )
    assert "+0.00" in paper and "not run" in paper and "not stated" in paper


def test_write_report_with_plots(runs_root: Path, tmp_path: Path) -> None:
    runs = collect([runs_root])
    _job(runs_root / "more", "tpp", 0.9, "0.001", 0, 88.0, jsv=2.0)
    runs = collect([runs_root])
    path = write_report(runs, tmp_path / "docs" / "r.md", "Synthetic", intro="hello")
    text = path.read_text()
    assert text.startswith("<!-- generated by tpp") and "\n# Synthetic\n" in text and "hello" in text
    for name in ("r_speedup.png", "r_epochs_r0.5.png", "r_epochs_r0.9.png"):
        assert f"]({name})" in text
        assert (path.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_cli(run_cli, runs_root: Path, tmp_path: Path) -> None:
    result = run_cli("report", runs_root)
    assert result.code == 0 and "| tpp |" in result.out
    out = tmp_path / "rep.md"
    result = run_cli("report", runs_root, "--out", out, "--title", "T")
    assert result.code == 0 and "\n# T\n" in out.read_text()
    result = run_cli("report", tmp_path / "nope")
    assert result.code == 2 and len(result.err_lines) == 1


def test_history_of_a_resumed_job_comes_from_metrics(tmp_path: Path) -> None:
    folder = _job(tmp_path, "tpp", 0.5, "0.01", 0, 90.0)
    report = json.loads((folder / "report.json").read_text())
    full = report["finetune"]["history"]
    report["finetune"]["history"] = full[-1:]  # what a job resumed before its last epoch reports
    (folder / "report.json").write_text(json.dumps(report))
    lines = [{"stage": "regularize", "epoch": 0}] + [{**r, "stage": "finetune"} for r in full]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (run,) = collect([folder])
    assert [r["epoch"] for r in run["report"]["finetune"]["history"]] == [0, 1, 2]


# three standalone `tpp prune` jobs on unrelated models, same method, ratio and LR (issue 18)
THREE_MODELS = [
    ("mymodels:res_cnn", "cifar10", 70.0, 80.0),
    ("hf:vit_folder", "imagefolder", 85.0, 90.0),
    ("resnet20", "cifar10", 75.0, 92.0),
]


@pytest.fixture
def three_models(tmp_path: Path) -> Path:
    root = tmp_path / "standalone"
    for i, (model, dataset, best, before) in enumerate(THREE_MODELS):
        _job(root, "tpp", 0.5, "0.01", 0, best, model=model, dataset=dataset, before=before, name=f"job{i}")
    return root


def test_different_models_are_never_averaged_together(three_models: Path) -> None:
    runs = collect([three_models])
    assert {(r["model"], r["dataset"]) for r in runs} == {(m, d) for m, d, _, _ in THREE_MODELS}
    groups = aggregate(runs)
    assert len(groups) == 3 and all(g["n"] == 1 and g["seeds"] == [0] for g in groups)
    table = summary_table(runs)
    assert table.splitlines()[0].startswith("| model | dataset | method |")
    for model, dataset, best, before in THREE_MODELS:  # each row names its model and its unpruned top-1
        row = next(line for line in table.splitlines() if f"`{model}`" in line)
        assert f"`{dataset}`" in row and f"{best:.2f}" in row and f"{before:.2f}" in row
    assert "±" not in table  # one seed per group: nothing was averaged


def test_report_of_several_models_has_a_section_each(three_models: Path, tmp_path: Path) -> None:
    path = write_report(collect([three_models]), tmp_path / "out" / "mix.md", "Mix")
    text = path.read_text()
    for model, dataset, _, _ in THREE_MODELS:
        assert f"\n## `{model}` on `{dataset}`\n" in text
    assert text.count("### All metrics") == 3 and "Models and data (3" in text
    figures = sorted(f.name for f in path.parent.glob("*.png"))
    assert len(figures) == 3 and all(f"]({name})" in text for name in figures)


def test_a_repeated_seed_is_counted_once_and_named(tmp_path: Path, run_cli) -> None:
    root = tmp_path / "runs"
    _job(root, "tpp", 0.5, "0.01", 0, 90.0, model="resnet20", dataset="cifar10", name="a_first")
    _job(root, "tpp", 0.5, "0.01", 1, 92.0, model="resnet20", dataset="cifar10", name="b_seed1")
    _job(root, "tpp", 0.5, "0.01", 0, 50.0, model="resnet20", dataset="cifar10", name="c_copy")  # seed 0 again
    _job(root, "tpp", 0.5, "0.01", 0, 60.0, model="resnet56", dataset="cifar10", name="d_other_model")
    runs = collect([root])
    by_model = {g["model"]: g for g in aggregate(runs)}
    assert by_model["resnet20"]["n"] == 2 and by_model["resnet20"]["seeds"] == [0, 1]
    assert by_model["resnet20"]["best_top1"][0] == pytest.approx(91.0)  # c_copy's 50.0 is not counted
    assert by_model["resnet56"]["n"] == 1  # same seed, other model: not a duplicate
    result = run_cli("report", root)
    assert result.code == 0
    assert "Duplicate seeds: 1 job(s) not counted" in result.out
    assert f"`{root / 'c_copy'}` (seed 0): not counted, same as `{root / 'a_first'}`" in result.out
    text = write_report(runs, tmp_path / "dup.md", "Dup").read_text()
    assert "1 duplicate(s) not counted" in text and "Duplicate seeds" in text
    assert f"`{root / 'c_copy'}` (seed 0): duplicate of `{root / 'a_first'}`, not counted" in text


def test_unpruned_top1_and_the_model_line_for_standalone_jobs(tmp_path: Path, run_cli) -> None:
    root = tmp_path / "runs"
    for seed, before in enumerate([91.0, 93.0]):
        _job(root, "l1", 0.5, "0.01", seed, 88.0, model="resnet20", dataset="cifar10", before=before)
    table = summary_table(collect([root]))
    assert "| unpruned top-1 |" in table.splitlines()[0] and "| 92.00 ± 1.00 |" in table
    assert "| model |" not in table  # one model: the current layout
    result = run_cli("report", root)
    assert result.out.startswith("Model and data: `resnet20` on `cifar10`.")
    text = write_report(collect([root]), tmp_path / "one.md", "One").read_text()
    assert "Model and data: `resnet20` on `cifar10`." in text and "\n## All metrics\n" in text


def test_model_from_the_recipe_when_config_json_lacks_it(tmp_path: Path) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        json.dumps(
            {  # JSON is YAML
                "name": "tiny",
                "description": "d",
                "paper": "p",
                "hardware": "h",
                "expected_wall_time": "w",
                "model": "mlp7_linear",
                "dataset": "mnist_subset",
                "base": {"epochs": 1, "lr": "0:0.01"},
                "prune": {"methods": ["l1"], "ratios": [0.5]},
                "finetune": {"epochs": 1, "lrs": ["0:0.01"]},
            }
        )
    )
    old = _job(tmp_path, "tpp", 0.5, "0.01", 0, 90.0, name="old")
    (old / "run.json").write_text(json.dumps({"recipe": "tiny", "recipe_file": str(recipe)}))
    gone = _job(tmp_path, "tpp", 0.5, "0.01", 0, 90.0, name="gone")
    (gone / "run.json").write_text(json.dumps({"recipe": "tiny", "recipe_file": str(tmp_path / "gone.yaml")}))
    photos = _job(tmp_path, "tpp", 0.5, "0.01", 0, 90.0, name="photos")
    (photos / "config.json").write_text(
        json.dumps({"seed": 0, "model": "resnet20", "dataset": "imagefolder", "data_dir": "photos"})
    )
    labels = {Path(r["path"]).name: (r["model"], r["dataset"]) for r in collect([tmp_path])}
    assert labels["old"] == ("mlp7_linear", "mnist_subset")
    assert labels["gone"] == ("recipe tiny", "?")  # the recipe file is gone: its name still keeps it apart
    assert labels["photos"] == ("resnet20", "imagefolder (photos)")  # another folder would be another dataset


def _text_job(root: Path, name: str, model: str, ratio: float, after: float) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    report = {
        "method": "l1",
        "config": {"method": "l1", "ratio": ratio, "ft_lr": "0:0.01"},
        "accuracy_before": {"perplexity": 20.0, "top1": 30.0},
        "accuracy_after_removal": {"perplexity": 40.0},
        "params_reduction": 0.0 if ratio == 0 else 0.2,
        "finetune": {"epochs": 0, "last_perplexity": after},
        "train_steps": {"regularize": 0, "finetune": 4},
        "wall_seconds": 1.0,
    }
    (folder / "report.json").write_text(json.dumps(report))
    (folder / "config.json").write_text(json.dumps({"seed": 0, "model": model, "dataset": "text_tiny"}))


def test_language_model_jobs_compare_with_their_own_dense_control(tmp_path: Path) -> None:
    for model, dense, pruned in (("hf:a", 10.0, 12.0), ("hf:b", 100.0, 150.0)):
        _text_job(tmp_path, f"{model[-1]}_dense", model, 0, dense)
        _text_job(tmp_path, f"{model[-1]}_l1", model, 0.2, pruned)
    table = language_model_table(collect([tmp_path]))
    assert table.splitlines()[0].startswith("| model | dataset |")
    assert "1.200×" in table and "1.500×" in table and len(table.splitlines()) == 6
