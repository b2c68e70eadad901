"""The paper's accounting (Table 1): FLOPs speedups and parameter sparsity of ResNet-56, counted, not trained."""

from __future__ import annotations

import pytest

import tpp
from tpp.models import create_model, example_inputs

# layer-wise ratio -> (paper's speedup, tolerance): Table 1 of the paper (docs/method.md#reporting)
PAPER_SPEEDUPS = {0.3: (1.45, 0.01), 0.5: (1.99, 0.01), 0.7: (3.59, 0.01), 0.9: (11.41, 0.05), 0.95: (19.31, 0.05)}


@pytest.fixture(scope="module")
def base():
    inputs = example_inputs("resnet56")
    return inputs, tpp.count(create_model("resnet56"), inputs)


def test_unpruned_resnet56_matches_the_paper_header(base):
    _, counts = base
    assert round(counts.params / 1e6, 2) == 0.85
    assert round(counts.flops / 1e9, 2) == 0.25  # FLOPs = 2 x MACs, as the paper counts


@pytest.mark.parametrize("ratio", sorted(PAPER_SPEEDUPS))
def test_resnet56_speedups_match_table_1(base, ratio):
    inputs, before = base
    model = create_model("resnet56")
    pruned = tpp.TPPPruner(model, inputs, ratio={"*layer*.conv1": ratio}, scope="internal").prune()
    speedup = tpp.count(pruned, inputs).speedup_over(before)
    paper, tolerance = PAPER_SPEEDUPS[ratio]
    assert abs(speedup / paper - 1) <= tolerance, f"{speedup:.3f} vs paper {paper}"


def test_resnet56_parameter_sparsity_at_half(base):
    inputs, before = base
    pruned = tpp.TPPPruner(create_model("resnet56"), inputs, ratio={"*layer*.conv1": 0.5}).prune()
    sparsity = tpp.count(pruned, inputs).params_reduction(before)
    assert round(100 * sparsity, 1) == 49.8
