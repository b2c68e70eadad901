"""TPPPruner on language models nobody here wrote: tiny ``transformers`` causal and masked LMs with random
weights (tests.zoo.lm_models), both scopes.

Every case meets the zoo contract (tests.zoo.contract): pruned exactly, reloaded bit for bit in a fresh
process, and exported with ``tpp.save_pretrained`` to a folder that ``from_pretrained`` loads in a
process where ``import tpp`` fails, with the pruned model's logits; or refused in one line.
``python -m tests.zoo.table --lm`` prints the same cases as a table.
"""

from __future__ import annotations

import pytest
import transformers  # a dev dependency: missing, the module fails instead of skipping

from tests.zoo.contract import check_case, check_pass_rate, describe
from tests.zoo.lm_models import HEADS_EXACT, IMPOSSIBLE, MUST_BE_EXACT, NO_HF_CONFIG, SPECS
from tests.zoo.runner import SCOPES, run_suite

LLAMA_STYLE = ("llama", "mistral", "qwen2", "qwen3", "gemma", "phi3")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Every case, run once for the module (one process checks every export and reload)."""
    return {c.key: c for c in run_suite("lm", tmp_path_factory.mktemp("lmzoo"))}


def test_the_zoo_covers_the_required_families():
    assert transformers.__version__
    required = {
        "gpt2",
        "gpt_neox",
        "opt",
        "bloom",
        "falcon",
        "llama",
        "mistral",
        "qwen2",
        "qwen3",
        "gemma",
        "phi3",
        "stablelm",
        "bert",
        "roberta",
    }
    assert required <= set(SPECS)
    assert {f"{name}/{scope}" for name in LLAMA_STYLE for scope in SCOPES} <= MUST_BE_EXACT


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("model", list(SPECS))
def test_case_meets_the_contract(zoo, model, scope):
    check_case(zoo[f"{model}/{scope}"])


@pytest.mark.parametrize("key", sorted(MUST_BE_EXACT))
def test_mlp_neurons_prune_exactly_and_export(zoo, key):
    case = zoo[key]
    assert case.meets_contract_exactly, describe(case)
    assert "MLP 64->32" in case.units or (case.model == "bloom" and "MLP 128->64" in case.units), case.units
    assert case.params and case.params[1] < case.params[0], case.params
    if case.model in NO_HF_CONFIG:
        assert case.export.startswith("refused: ") and "tpp.save_pruned" in case.export, case.export
    else:
        assert case.export == "equal", f"{describe(case)}; export: {case.export}"


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("model", HEADS_EXACT)
def test_whole_kv_groups_prune_exactly_and_export(zoo, model, scope):
    case = zoo[f"{model}/{scope}"]
    assert case.meets_contract_exactly and case.export == "equal", describe(case)
    assert "heads 4->2, KV heads 2->1" in case.units, case.units  # one KV group and its two query heads


def test_only_families_without_a_config_field_refuse_the_export(zoo):
    refused = {c.model for c in zoo.values() if c.export.startswith("refused")}
    assert refused <= set(NO_HF_CONFIG), refused


def test_at_least_90_percent_of_cases_prune_exactly(zoo):
    check_pass_rate(list(zoo.values()), IMPOSSIBLE)
