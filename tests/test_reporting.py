"""Reporting: aggregation over seeds (mean, population std), tables, plots and the CLI, on
synthetic report.json files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tpp.errors import ConfigError
from tpp.reporting import aggregate, collect, mean_std, paper_table, summary_table, write_report


def _job(root: Path, method: str, ratio: float, lr: str, seed: int, best: float, *, jsv: float | None = None) -> Path:
    folder = root / f"{method}__r{ratio}__lr{lr}__s{seed}"
    folder.mkdir(parents=True)
    history = [{"epoch": e, "lr": float(lr), "train_loss": 1.0 / (e + 1), "test_top1": best - 2 + e,
                "best_top1": best - 2 + e, **({"jsv_mean": 1.0 + e} if jsv is not None else {})} for e in range(3)]
    report = {
        "method": method, "config": {"method": method, "ratio": ratio, "ft_lr": f"0:{lr},30:{float(lr) / 10:g}"},
        "accuracy_before": {"top1": 93.0}, "accuracy_after_removal": {"top1": 10.0 + seed},
        "counts_before": {"params": 1000, "macs": 500, "flops": 1000},
        "counts_after": {"params": 500, "macs": 250, "flops": 500}, "speedup": 2.0, "params_reduction": 0.5,
        "finetune": {"epochs": 3, "best_top1": best, "last_top1": best - 0.5, "history": history},
        "wall_seconds": 1.0,
    }
    if jsv is not None:
        report["jsv_after_prune"] = {"mean": jsv, "std": 0.1, "min": 0.0, "max": 1.0, "condition_number": 3.0}
    (folder / "report.json").write_text(json.dumps(report))
    (folder / "config.json").write_text(json.dumps({"seed": seed}))
    return folder


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for seed, best in enumerate([93.21, 93.29, 93.47]):  # the digest's TPP PR 0.5 example: 93.32 (0.11)
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
    assert tpp["best_top1"][1] == pytest.approx(math.sqrt(((93.21 - 93.3233) ** 2 + (93.29 - 93.3233) ** 2
                                                           + (93.47 - 93.3233) ** 2) / 3), abs=1e-3)
    assert tpp["jsv_after_prune"] == (pytest.approx(4.0), pytest.approx(math.sqrt(2 / 3)))
    assert tpp["after_removal_top1"][0] == pytest.approx(11.0)
    l1 = groups[("l1", "0.001")]
    assert l1["best_top1"] == (pytest.approx(90.5), pytest.approx(0.5)) and l1["jsv_after_prune"] == (None, None)


def test_summary_and_paper_tables(runs_root: Path) -> None:
    runs = collect([runs_root])
    table = summary_table(runs)
    assert "93.32 ± 0.11" in table and "92.82 ± 0.11" in table  # best, last = best - 0.5
    assert "mean JSV after pruning" in table and "4.0000 ± 0.8165" in table and "2.00x" in table
    paper = paper_table(runs, [{"method": "tpp", "ratio": None, "lr": "0.001", "top1": 93.32, "top1_std": 0.11},
                               {"method": "scratch", "ratio": "0.5", "lr": None, "top1": 92.78}])
    assert "+0.00" in paper and "not run" in paper and "not stated" in paper


def test_write_report_with_plots(runs_root: Path, tmp_path: Path) -> None:
    runs = collect([runs_root])
    _job(runs_root / "more", "tpp", 0.9, "0.001", 0, 88.0, jsv=2.0)
    runs = collect([runs_root])
    path = write_report(runs, tmp_path / "docs" / "r.md", "Synthetic", intro="hello")
    text = path.read_text()
    assert text.startswith("# Synthetic") and "hello" in text
    for name in ("r_speedup.png", "r_epochs_r0.5.png", "r_epochs_r0.9.png"):
        assert f"]({name})" in text
        assert (path.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_cli(run_cli, runs_root: Path, tmp_path: Path) -> None:
    result = run_cli("report", runs_root)
    assert result.code == 0 and "| tpp |" in result.out
    out = tmp_path / "rep.md"
    result = run_cli("report", runs_root, "--out", out, "--title", "T")
    assert result.code == 0 and out.read_text().startswith("# T")
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
