"""Every registered method runs through ``tpp prune`` on both paper models (an MLP and a ResNet with
BatchNorm and residual coupling). Apart from tests/test_prune_job.py so that the two files run in
parallel under ``make test`` (pytest-xdist hands out whole files)."""

from __future__ import annotations

import json

import pytest
import torch

import tpp
from tests.prune_helpers import own_flags
from tpp.cli.main import main


@pytest.fixture(scope="module")
def resnet20_base(tmp_path_factory):
    path = tmp_path_factory.mktemp("r20") / "base.pt"
    torch.manual_seed(0)
    torch.save(tpp.create_model("resnet20", num_classes=10, in_channels=1).state_dict(), path)
    return path


@pytest.mark.parametrize("method", tpp.pruning.list_methods())
@pytest.mark.parametrize("model", ["mlp7_linear", "resnet20"])
def test_every_method_runs_from_the_cli_on_both_paper_models(pretrained, resnet20_base, tmp_path, method, model):
    checkpoint = pretrained if model == "mlp7_linear" else resnet20_base
    out = tmp_path / "job"
    code = main(
        [
            "prune",
            "--method",
            method,
            "--model",
            model,
            "--dataset",
            "mnist_subset",
            "--checkpoint",
            str(checkpoint),
            "--ratio",
            "0.5",
            "--train-subset",
            "64",
            "--batch-size",
            "32",
            "--test-batch-size",
            "500",
            *own_flags(
                method,
                [
                    "--reg-step",
                    "0.5",
                    "--reg-interval",
                    "1",
                    "--stabilize-iters",
                    "2",
                    "--zero-out-interval",
                    "1",
                    "--orth-iters",
                    "2",
                    "--max-iterations",
                    "4",
                    "--check-interval",
                    "1",
                ],
            ),
            "--ft-epochs",
            "1",
            "--ft-lr",
            "0.001",
            "--jsv-batches",
            "0",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == method and report["speedup"] > 1.2
