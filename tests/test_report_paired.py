"""Fair comparison in reports: the training budget column, the final model's table first, and the paired
(by seed) difference of the reference method and each other method, on synthetic report.json folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tpp.errors import ConfigError
from tpp.reporting import collect, paired_table, summary_table, write_report
from tpp.reporting.report import summary_text

# (method, seed, last top-1, regularisation iterations or None for none recorded, fine-tuning steps or None)
JOBS = [
    ("tpp", 0, 91.20, 160, 160),
    ("tpp", 1, 90.85, 160, 160),
    ("l1", 0, 90.00, None, 320),
    ("l1", 1, 91.35, None, 320),
]


def _job(
    root: Path,
    method: str,
    seed: int,
    last: float,
    iterations: int | None,
    steps: int | None,
    ratio: float = 0.5,
    lr: str = "0.01",
) -> Path:
    folder = root / f"{method}__r{ratio}__lr{lr}__s{seed}"
    folder.mkdir(parents=True)
    finetune = {"epochs": 2, "best_top1": last + 1.0, "last_top1": last, "history": []}
    finetune.update({"steps": steps} if steps is not None else {})  # a job from before budgets has no steps
    report = {
        "method": method,
        "config": {"method": method, "ratio": ratio, "ft_lr": lr},
        "accuracy_before": {"top1": 93.0},
        "accuracy_after_removal": {"top1": 10.0},
        "speedup": 2.0,
        "params_reduction": 0.5,
        "finetune": finetune,
        "wall_seconds": 60.0,
    }
    if iterations is not None:
        report["regularization"] = {"iterations": iterations, "epochs": 1}
    (folder / "report.json").write_text(json.dumps(report))
    (folder / "config.json").write_text(json.dumps({"seed": seed, "model": "resnet20", "dataset": "cifar10"}))
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> list[dict]:
    for job in JOBS:
        _job(tmp_path / "runs", *job)
    return collect([tmp_path / "runs"])


def _row(table: str, method: str) -> list[str]:
    line = next(line for line in table.splitlines() if f"| {method} |" in line)
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_paired_differences_mean_std_and_wins(runs: list[dict]) -> None:
    table = paired_table(runs)
    header = [cell.strip() for cell in table.splitlines()[0].strip("|").split("|")]
    row = dict(zip(header, _row(table, "l1")))
    # seed 0: 91.20 - 90.00 = +1.20; seed 1: 90.85 - 91.35 = -0.50; mean +0.35, population std 0.85
    assert row["per-seed differences"] == "+1.20, -0.50" and row["seeds"] == "0, 1"
    assert row["tpp − method, mean ± std"] == "+0.35 ± 0.85"
    assert row["seeds paired"] == "2" and row["tpp higher"] == "1/2"
    assert row["ratio"] == "`0.5`" and row["fine-tune LR"] == "0.01"
    assert "| tpp |" not in table and "Not paired" not in table  # the reference is not compared with itself


def test_a_seed_on_one_side_only_is_not_paired(runs: list[dict], tmp_path: Path) -> None:
    _job(tmp_path / "runs", "tpp", 2, 95.0, 160, 160)
    table = paired_table(collect([tmp_path / "runs"]))
    row = _row(table, "l1")
    assert "+1.20, -0.50" in row and "2" in row and "1/2" in row  # seed 2 has no l1 run: left out
    assert "Not paired" in table and "`l1` at ratio `0.5`, LR 0.01: 1 run(s) (tpp seed 2)" in table
    _job(tmp_path / "runs", "tpp-nogram", 1, 90.0, 160, 160)  # a recipe variant: its own method, one seed
    _job(tmp_path / "runs", "tpp-nobn", 5, 90.0, 160, 160)  # no seed in common with tpp: no row, only the note
    table = paired_table(collect([tmp_path / "runs"]))
    assert _row(table, "tpp-nogram")[3:] == ["+0.85", "1", "1/1", "1", "+0.85"]
    assert "| tpp-nobn |" not in table and "4 run(s) (tpp seed 0, tpp seed 1, tpp seed 2, tpp-nobn seed 5)" in table


def test_paired_table_needs_the_reference_and_a_known_metric(runs: list[dict]) -> None:
    assert paired_table([r for r in runs if r["method"] != "tpp"]) == ""  # a grid without tpp: no section
    assert "-0.35 ± 0.85" in paired_table(runs, reference="l1")
    tie = _row(paired_table(runs, metric="after_removal_top1"), "l1")  # 10.00 on every run
    assert "+0.00, +0.00" in tie and "0/2" in tie  # a tie is no win
    with pytest.raises(ConfigError, match="unknown metric"):
        paired_table(runs, metric="top5")


def test_budget_column(runs: list[dict], tmp_path: Path) -> None:
    table = summary_table(runs)
    assert "| steps after base (reg + FT) |" in table.splitlines()[0]
    assert "| 320 (160 + 160) |" in _row_line(table, "tpp") and "| 320 (0 + 320) |" in _row_line(table, "l1")
    _job(tmp_path / "old", "l1", 0, 90.0, None, None)  # made before budgets: no fine-tuning steps recorded
    old = summary_table(collect([tmp_path / "old"]))
    assert "| 320 (" not in old and "|  |" in _row_line(old, "l1")


def _row_line(table: str, method: str) -> str:
    return next(line for line in table.splitlines() if f"| {method} |" in line)


def test_report_leads_with_the_final_model(runs: list[dict], tmp_path: Path) -> None:
    text = write_report(runs, tmp_path / "doc" / "r.md", "Fair").read_text()
    headings = [
        "## Top-1 of the final model (last fine-tuning epoch)",
        "## Best top-1 after fine-tuning (paper layout)",
        "## Paired by seed: tpp minus each method",
        "## All metrics",
    ]
    positions = [text.index(h) for h in headings]
    assert positions == sorted(positions)
    assert "involves no choice" in text and "model selection on the test set" in text
    assert "+1.20, -0.50" in text
    no_tpp = write_report([r for r in runs if r["method"] != "tpp"], tmp_path / "doc" / "l1.md", "L1").read_text()
    assert "Paired by seed" not in no_tpp and "## Top-1 of the final model" in no_tpp
    assert "+1.20, -0.50" in summary_text(runs)  # what `tpp report` prints without --out


def test_runs_of_another_model_are_never_paired(runs: list[dict], tmp_path: Path) -> None:
    other = _job(tmp_path / "more", "l1", 0, 50.0, None, 320)
    (other / "config.json").write_text(json.dumps({"seed": 0, "model": "resnet56", "dataset": "cifar10"}))
    table = paired_table(runs + collect([tmp_path / "more"]))
    assert table.splitlines()[0].startswith("| model | dataset | ratio |")
    assert len([line for line in table.splitlines() if "| l1 |" in line]) == 1  # resnet56 has no tpp to pair with
    assert "+1.20, -0.50" in table and "50.00" not in table and "+41.20" not in table
