"""`tpp train / prune / eval / report` on text: a tiny random Llama folder (byte vocabulary) learns the
embedded English corpus (`--dataset text_tiny`), is pruned with TPP and each importance, and reloads.

Learning is checked on real text: the embedded corpus's test split, perplexity down from ~vocabulary size.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import transformers

SEQ = [
    "--dataset",
    "text_tiny",
    "--seq-len",
    "32",
    "--batch-size",
    "8",
    "--test-batch-size",
    "16",
    "--windows-per-epoch",
    "64",
    "--quiet",
]


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory) -> Path:
    """A save_pretrained folder of a tiny random Llama over the 256 byte values (no tokenizer files)."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=256,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=96,
        max_position_embeddings=64,
        architectures=["LlamaForCausalLM"],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformers.LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def trained(llama_folder, tmp_path_factory) -> Path:
    """The tiny Llama trained for 3 epochs on the embedded corpus (`tpp train`)."""
    from tpp.cli.main import main

    out = tmp_path_factory.mktemp("lm-train") / "run"
    assert (
        main(
            [
                "train",
                "--model",
                f"hf:{llama_folder}",
                "--pretrained",
                *SEQ,
                "--epochs",
                "3",
                "--lr",
                "0:0.1",
                "--weight-decay",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


def test_train_learns_the_embedded_text(trained):
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["test_perplexity"] < records[0]["test_perplexity"]
    assert records[-1]["test_perplexity"] < 40  # from ~256 (uniform over bytes) at random init
    config = json.loads((trained / "config.json").read_text())
    assert config["dataset"] == "text_tiny" and config["seq_len"] == 32 and config["tokenizer"] == "bytes"


@pytest.mark.parametrize("importance", ["l1", "activation", "taylor"])
def test_prune_a_language_model_with_each_importance(run_cli, llama_folder, trained, tmp_path, importance):
    out = tmp_path / "job"
    result = run_cli(
        "prune",
        "--model",
        f"hf:{llama_folder}",
        "--checkpoint",
        trained / "last.pt",
        *SEQ,
        "--method",
        "tpp",
        "--ratio",
        "*.mlp.*:0.5",
        "--importance",
        importance,
        "--calibration-batches",
        "2",
        "--reg-step",
        "0.25",
        "--reg-interval",
        "1",
        "--stabilize-iters",
        "4",
        "--zero-out-interval",
        "0",
        "--prune-lr",
        "0.1",
        "--ft-epochs",
        "1",
        "--ft-lr",
        "0:0.1",
        "--out",
        out,
    )
    assert result.code == 0, result.err
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["importance"] == importance
    assert report["train_steps"] == {"regularize": 8, "finetune": 8, "total": 16}
    # TPP zeroes the pruned neurons before removal, so removal itself changes (almost) nothing
    assert report["accuracy_after_removal"]["top1"] == pytest.approx(report["regularization"]["last_top1"], abs=0.5)
    assert report["finetune"]["last_perplexity"] < 1.5 * report["accuracy_before"]["perplexity"]
    assert "perplexity" in result.out and "after removal" in result.out
    evaluated = run_cli("eval", "--checkpoint", out / "pruned_model.pt", "--dataset", "text_tiny", "--seq-len", "32")
    assert evaluated.code == 0, evaluated.err
    assert f"perplexity {report['finetune']['last_perplexity']:.3f}" in evaluated.out


def test_a_model_that_is_no_language_model_is_refused_in_one_line(run_cli, tmp_path):
    result = run_cli(
        "prune",
        "--model",
        "mlp7_linear",
        "--weights",
        tmp_path / "none.pt",
        *SEQ,
        "--ratio",
        "0.5",
        "--out",
        tmp_path / "job",
    )
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1


def test_text_options_with_image_data_are_refused(run_cli, tmp_path):
    result = run_cli(
        "train", "--model", "mlp7_linear", "--dataset", "mnist_subset", "--seq-len", "32", "--out", tmp_path / "r"
    )
    assert result.code == 2 and "--seq-len applies to --dataset text" in result.err


def test_the_cli_names_the_same_text_datasets_as_the_data_layer():
    from tpp.cli.common import TEXT_DATASETS
    from tpp.data.info import TEXT_DATASETS as DATA_TEXT_DATASETS

    assert TEXT_DATASETS == DATA_TEXT_DATASETS


def test_jsv_of_a_language_model_from_the_command_line(run_cli, llama_folder, trained):
    result = run_cli(
        "jsv",
        "--model",
        f"hf:{llama_folder}",
        "--checkpoint",
        trained / "last.pt",
        "--dataset",
        "text_tiny",
        "--seq-len",
        "32",
        "--batch-size",
        "2",
        "--json",
    )
    assert result.code == 0, result.err
    assert json.loads(result.out)["mean"] > 0
    refused = run_cli(
        "jsv",
        "--model",
        f"hf:{llama_folder}",
        "--checkpoint",
        trained / "last.pt",
        "--dataset",
        "text_tiny",
        "--train-mode",
    )
    assert refused.code == 2 and "language model has none" in refused.err
