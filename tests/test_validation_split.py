"""``--val-split``: a validation carve of the training set, to choose settings on data that the reported
test numbers never saw, and that training never sees whichever split is evaluated."""

from __future__ import annotations

import json

import pytest
import torch

from tests.user_model_zoo import one_line_error, top1
from tpp.data import build_loaders
from tpp.data.builders import validation_indices
from tpp.errors import DataError


def _labels(loader) -> torch.Tensor:
    return torch.cat([targets for _, targets in loader])


def test_the_carve_is_class_balanced_disjoint_and_the_same_for_every_seed():
    labels = torch.arange(10).repeat_interleave(100)
    kept, held = validation_indices(labels, 0.1, "toy")
    assert len(held) == 100 and torch.bincount(labels[held]).tolist() == [10] * 10
    assert not set(kept.tolist()) & set(held.tolist()) and len(kept) + len(held) == 1000
    torch.manual_seed(123)  # the run's seed does not move the carve
    assert torch.equal(validation_indices(labels, 0.1, "toy")[1], held)
    assert not torch.equal(held, torch.arange(0, 1000, 10))  # drawn at random within classes, not the first ones
    for bad in (0.0, 0.6):
        with pytest.raises(DataError, match="outside"):
            validation_indices(labels, bad, "toy")


def test_loaders_train_without_the_carve_and_evaluate_on_it_only_when_asked():
    full_train, full_test, _ = build_loaders("mnist_subset", batch_size=500, test_batch_size=500)
    train, test, _ = build_loaders("mnist_subset", batch_size=500, test_batch_size=500, val_split=0.1)
    train_v, valid, _ = build_loaders(
        "mnist_subset", batch_size=500, test_batch_size=500, val_split=0.1, eval_split="valid"
    )
    assert len(_labels(full_train)) == 6000 and len(_labels(train)) == len(_labels(train_v)) == 5400
    assert torch.equal(_labels(test), _labels(full_test)) and len(_labels(valid)) == 600
    # the validation images are training images the carved loader never yields
    seen = {image.numpy().tobytes() for images, _ in train_v for image in images}
    assert not any(image.numpy().tobytes() in seen for images, _ in valid for image in images)
    with pytest.raises(DataError, match="needs --val-split"):
        build_loaders("mnist_subset", eval_split="valid")
    with pytest.raises(DataError, match="valid.txt"):
        build_loaders("text_tiny", val_split=0.1)


def test_the_cli_chooses_on_validation_and_reports_on_test(run_cli, tmp_path):
    quick = ["--model", "mlp7_linear", "--dataset", "mnist_subset", "--batch-size", "100", "--quiet"]
    trained = run_cli(
        "train", *quick[:-1], "--val-split", "0.1", "--eval-split", "valid", "--epochs", "1", "--out", tmp_path / "base"
    )
    assert trained.code == 0, trained.err
    assert "valid top1" in trained.out and "test top1" not in trained.out  # the epoch line names its split
    best = tmp_path / "base" / "best.pt"
    on_test = run_cli("eval", "--checkpoint", best)  # the file records the carve; the default split is test
    on_valid = run_cli("eval", "--checkpoint", best, "--eval-split", "valid")
    assert "1000 mnist_subset test images" in on_test.out and "600 mnist_subset validation images" in on_valid.out
    assert top1(on_valid.out) == pytest.approx(top1(trained.out.replace("best top-1 ", "top-1 ")), abs=0.01)
    one_line_error(
        run_cli("eval", "--checkpoint", best, "--val-split", "0.2", "--eval-split", "valid"),
        "validation carve 0.1 in the record, 0.2 now",
    )
    pruned = run_cli(
        "prune",
        "--checkpoint",
        best,
        "--method",
        "l1",
        "--ratio",
        "0.5",
        "--ft-epochs",
        "1",
        "--eval-split",
        "valid",
        "--jsv-batches",
        "0",
        "--batch-size",
        "100",
        "--out",
        tmp_path / "job",
        "--quiet",
    )
    assert pruned.code == 0, pruned.err
    report = json.loads((tmp_path / "job" / "report.json").read_text())
    assert report["accuracy_before"]["top1"] == pytest.approx(top1(on_valid.out), abs=0.01)
    assert report["accuracy_before"]["samples"] == 600
    # a model trained on every image cannot be judged on a carve of them
    run_cli("train", *quick, "--epochs", "1", "--out", tmp_path / "whole")
    one_line_error(
        run_cli("eval", "--checkpoint", tmp_path / "whole" / "best.pt", "--val-split", "0.1", "--eval-split", "valid"),
        "trained on every training image",
    )


def test_a_recipe_chooses_on_its_validation_carve(run_cli, tmp_path):
    recipe = tmp_path / "val.yaml"
    recipe.write_text(
        "model: mlp7_linear\ndataset: mnist_subset\nval_split: 0.1\neval_split: valid\nbatch_size: 200\n"
        "base: {epochs: 1, lr: '0.05'}\nprune: {methods: [l1], ratios: [0.5]}\n"
        "finetune: {epochs: 1, lrs: ['0.01']}\njsv: {batches: 0}\n"
    )
    result = run_cli("run", recipe, "--out", tmp_path / "runs", "--quiet")
    assert result.code == 0, result.err
    job = next((tmp_path / "runs").glob("l1__*"))
    report = json.loads((job / "report.json").read_text())
    assert report["accuracy_before"]["samples"] == 600  # the held-out images, not the 1000 test images
    summary = run_cli("report", tmp_path / "runs")
    assert summary.code == 0 and "mnist_subset [validation]" in summary.out, summary.err
    on_test = run_cli("eval", "--checkpoint", job / "pruned_model.pt")  # reporting: the recorded carve, test split
    assert on_test.code == 0 and "1000 mnist_subset test images" in on_test.out, on_test.err
    for text, message in (("val_split: 0.7\n", "must be in (0, 0.5]"), ("eval_split: valid\n", "needs val_split")):
        recipe.write_text(
            "model: mlp7_linear\ndataset: mnist_subset\ncheckpoint: x.pt\nprune: {methods: [l1], "
            "ratios: [0.5]}\n" + text
        )
        one_line_error(run_cli("run", recipe, "--dry-run"), message)
