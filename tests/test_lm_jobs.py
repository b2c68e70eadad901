"""Language models through the training stack: causal-LM loss, perplexity, the LM JSV and a whole
pruning job (regularise -> remove -> recover) with its report, on a tiny random Llama.

The batches here are random token ids in a hand-made loader, so these tests check the plumbing
(shapes, sums, what the report records); learning on real text is checked where the text loader is
(tests/test_text_data.py) and in the CLI tests.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
import transformers

from tpp.jobs import JobContext, PruneJobConfig, run_prune_job
from tpp.metrics.language import language_model_jsv, takes_token_ids
from tpp.reporting.collect import DENSE_CONTROL, collect
from tpp.reporting.language import language_model_table
from tpp.training import evaluate

VOCAB, T = 96, 12


class _Windows:
    """``(inputs, targets)`` batches of random token ids, targets the next token; ``set_epoch`` reorders."""

    def __init__(self, batches: int = 3, batch: int = 2, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.data = torch.randint(0, VOCAB, (batches, batch, T + 1), generator=g)
        self.bytes_per_token = 3.0
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.data.shape[0]

    def __iter__(self):
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(self.epoch))
        for i in order.tolist():
            yield self.data[i, :, :-1], self.data[i, :, 1:]


def _llama():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    config._attn_implementation = "eager"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.LlamaForCausalLM(config)


def test_evaluate_gives_the_causal_lm_loss_perplexity_and_bits_per_byte():
    model, loader = _llama().eval(), _Windows()
    result = evaluate(model, loader)
    with torch.no_grad():
        losses = [
            F.cross_entropy(model(x, use_cache=False).logits.flatten(0, 1), y.flatten(), reduction="sum")
            for x, y in loader
        ]
    tokens = loader.data[..., 1:].numel()
    assert result["samples"] == tokens
    assert result["loss"] == pytest.approx(float(sum(losses)) / tokens, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]), rel=1e-9)
    assert result["bits_per_byte"] == pytest.approx(result["loss"] / math.log(2) / 3.0, rel=1e-9)
    assert result["perplexity"] == pytest.approx(VOCAB, rel=0.5)  # random weights: about uniform


def test_language_model_jsv_differentiates_the_next_token_logits_by_the_embeddings():
    model, loader = _llama(), _Windows()
    assert takes_token_ids(next(iter(loader))) and not takes_token_ids((torch.randn(2, 3, 4, 4), None))
    result = language_model_jsv(model, loader, max_batches=1)
    assert result.num_examples == 2 and result.mean > 0
    # J is linear in the output layer: scaling the LM head scales every singular value
    with torch.no_grad():
        model.lm_head.weight.mul_(2.0)
    doubled = language_model_jsv(model, loader, max_batches=1)
    assert doubled.max == pytest.approx(2 * result.max, rel=1e-3)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """Three finished jobs in one folder: TPP (L1) at 0.5 of the MLP, L1 with equal steps, a dense control."""
    root = tmp_path_factory.mktemp("lm-jobs")
    common = dict(momentum=0.9, weight_decay=0.0, jsv_batches=1, ft_lr="0:0.01")
    configs = {
        "tpp": PruneJobConfig(
            method="tpp",
            ratio={"*.mlp.*": 0.5},
            prune_lr=0.01,
            ft_epochs=1,
            pruner_options=dict(reg_step=0.25, reg_interval=1, stabilize_iters=2, zero_out_interval=0),
            **common,
        ),
        "l1": PruneJobConfig(method="l1", ratio={"*.mlp.*": 0.5}, ft_epochs=3, **common),
        "dense": PruneJobConfig(method="l1", ratio=0.0, ft_epochs=3, **common),
    }
    reports = {}
    for name, config in configs.items():
        loader = _Windows()
        _, reports[name] = run_prune_job(
            _llama(), loader, _Windows(seed=1), next(iter(loader))[0], config, JobContext(out=root / name, quiet=True)
        )
    return root, reports


def test_a_pruning_job_on_a_language_model_reports_perplexities_and_its_training_steps(jobs):
    _, reports = jobs
    tpp_report = reports["tpp"]
    for stage in ("accuracy_before", "accuracy_after_removal"):
        assert tpp_report[stage]["perplexity"] == pytest.approx(math.exp(tpp_report[stage]["loss"]))
    assert tpp_report["finetune"]["last_perplexity"] == pytest.approx(
        tpp_report["finetune"]["history"][-1]["test_perplexity"]
    )
    assert tpp_report["train_steps"] == {"regularize": 6, "finetune": 3, "total": 9}  # 4 to the ceiling + 2
    assert reports["l1"]["train_steps"] == {"regularize": 0, "finetune": 9, "total": 9}
    assert tpp_report["jsv_after_prune"]["mean"] > 0
    assert tpp_report["counts_after"]["params"] < tpp_report["counts_before"]["params"]
    assert reports["dense"]["params_reduction"] == 0.0


def test_the_report_compares_with_the_dense_control(jobs):
    root, reports = jobs
    runs = collect([root])
    assert sorted(r["method"] for r in runs) == sorted([DENSE_CONTROL, "l1", "tpp"])
    table = language_model_table(runs)
    dense = reports["dense"]["finetune"]["last_perplexity"]
    l1 = reports["l1"]["finetune"]["last_perplexity"]
    assert f"{l1 / dense:.3f}×" in table
    assert "6 + 3" in table and "0 + 9" in table


def test_the_markdown_report_of_language_model_jobs(jobs, tmp_path, run_cli):
    root, _ = jobs
    intro = tmp_path / "intro.md"
    intro.write_text("Protocol: tiny random Llama.\n")
    result = run_cli("report", root, "--out", tmp_path / "page.md", "--title", "LM", "--intro", intro)
    assert result.code == 0, result.err
    page = (tmp_path / "page.md").read_text()
    assert "Protocol: tiny random Llama." in page and "## Test perplexity" in page and DENSE_CONTROL in page
    assert "top-1 (%)" not in page  # no accuracy tables for language models
    missing = run_cli("report", root, "--out", tmp_path / "other.md", "--intro", tmp_path / "none.md")
    assert missing.code == 2 and len(missing.err.strip().splitlines()) == 1 and "--intro" in missing.err
