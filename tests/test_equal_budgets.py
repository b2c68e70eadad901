"""Equal budgets: with ``--budget-steps N`` every method trains N optimizer steps after the base model,
regularisation and fine-tuning together, so a one-shot method fine-tunes for what a regularised one
spends regularising."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.user_model_zoo import one_line_error

# 300 images in batches of 100: 3 steps an epoch; TPP regularises 4 + 6 = 10 iterations (6 layers zeroed 1 apart)
JOB = [
    "--model",
    "mlp7_linear",
    "--dataset",
    "mnist_subset",
    "--ratio",
    "0.5",
    "--train-subset",
    "300",
    "--batch-size",
    "100",
    "--ft-lr",
    "step:0.01",
    "--jsv-batches",
    "0",
    "--quiet",
]
TPP = ["--reg-step", "0.25", "--reg-interval", "1", "--stabilize-iters", "6", "--zero-out-interval", "1"]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from tpp.cli.main import main

    out = tmp_path_factory.mktemp("budget-base") / "run"
    assert (
        main(
            [
                "train",
                "--model",
                "mlp7_linear",
                "--dataset",
                "mnist_subset",
                "--epochs",
                "1",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    return out / "best.pt"


def _steps(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())["train_steps"]


def test_every_method_trains_the_same_number_of_steps(base, run_cli, tmp_path):
    for method, extra in (("tpp", TPP), ("l1", [])):
        result = run_cli(
            "prune",
            "--checkpoint",
            base,
            "--method",
            method,
            *JOB,
            *extra,
            "--budget-steps",
            "13",
            "--out",
            tmp_path / method,
        )
        assert result.code == 0, result.err
    assert _steps(tmp_path / "tpp") == {"regularize": 10, "finetune": 3, "total": 13}
    assert _steps(tmp_path / "l1") == {"regularize": 0, "finetune": 13, "total": 13}
    l1 = json.loads((tmp_path / "l1" / "report.json").read_text())["finetune"]
    assert l1["epochs"] == 5 and l1["steps"] == 13  # 4 whole epochs and one cut at the 13th step


def test_a_budget_the_regularisation_alone_exceeds_is_refused_before_it_runs(base, run_cli, tmp_path):
    result = run_cli(
        "prune", "--checkpoint", base, "--method", "tpp", *JOB, *TPP, "--budget-steps", "9", "--out", tmp_path / "job"
    )
    one_line_error(result, "budget_steps 9 is less than the 10 regularisation iterations of tpp")
    assert not (tmp_path / "job" / "prune").exists()
    one_line_error(
        run_cli(
            "prune",
            "--checkpoint",
            base,
            "--method",
            "l1",
            *JOB,
            "--budget-steps",
            "9",
            "--ft-epochs",
            "3",
            "--out",
            tmp_path / "other",
        ),
        "drop --ft-epochs",
    )


def test_a_recipe_gives_every_method_its_budget(run_cli, tmp_path, base):
    recipe = tmp_path / "budget.yaml"
    recipe.write_text(
        f"model: mlp7_linear\ndataset: mnist_subset\ncheckpoint: {base}\ntrain_subset: 300\n"
        "batch_size: 100\nprune:\n  methods: [l1, tpp]\n  ratios: [0.5]\n"
        "  tpp: {reg_step: 0.25, reg_interval: 1, stabilize_iters: 6, zero_out_interval: 1}\n"
        "finetune: {budget_steps: 12, lrs: ['step:0.01']}\njsv: {batches: 0}\n"
    )
    result = run_cli("run", recipe, "--out", tmp_path / "runs", "--quiet")
    assert result.code == 0, result.err
    totals = {job.name.split("__")[0]: _steps(job) for job in (tmp_path / "runs").glob("*__*")}
    assert totals == {
        "l1": {"regularize": 0, "finetune": 12, "total": 12},
        "tpp": {"regularize": 10, "finetune": 2, "total": 12},
    }


def test_a_recipe_runs_ablations_of_one_method_as_named_variants(run_cli, tmp_path, base):
    recipe = tmp_path / "ablation.yaml"
    body = (
        f"model: mlp7_linear\ndataset: mnist_subset\ncheckpoint: {base}\ntrain_subset: 300\nbatch_size: 100\n"
        "prune:\n  methods: [tpp, tpp-nogram]\n  ratios: [0.5]\n"
        "  variants: {tpp-nogram: {method: tpp, options: {gram_weight: 0}}}\n"
        "  tpp: {reg_step: 0.25, reg_interval: 1, stabilize_iters: 6, zero_out_interval: 1}\n"
        "finetune: {budget_steps: 12, lrs: ['step:0.01']}\njsv: {batches: 0}\n"
    )
    recipe.write_text(body)
    dry = run_cli("run", recipe, "--dry-run")
    assert dry.code == 0 and "tpp-nogram {'reg_step': 0.25" in dry.out and "'gram_weight': 0}" in dry.out, dry.err
    result = run_cli("run", recipe, "--out", tmp_path / "runs", "--quiet")
    assert result.code == 0, result.err
    variant = next((tmp_path / "runs").glob("tpp-nogram__*"))
    report = json.loads((variant / "report.json").read_text())
    assert report["method"] == "tpp" and report["method_options"]["gram_weight"] == 0
    assert report["method_options"]["stabilize_iters"] == 6  # the method's block, under the variant's own options
    assert report["train_steps"] == {"regularize": 10, "finetune": 2, "total": 12}
    table = run_cli("report", tmp_path / "runs")
    assert "| tpp-nogram |" in table.out and "| tpp |" in table.out, table.out
    for variants, message in (
        ("{tpp: {method: l1}}", "not a registered method's"),
        ("{mine: {method: nothing}}", "needs 'method'"),
        ("{other: {method: tpp}}", "which 'methods' does not run"),
    ):
        recipe.write_text(body.replace("{tpp-nogram: {method: tpp, options: {gram_weight: 0}}}", variants))
        one_line_error(run_cli("run", recipe, "--dry-run"), message)
