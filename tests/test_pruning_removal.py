"""Physical removal is exact: the pruned model computes what the zeroed model computed (1e-5, eval)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import tpp
from tests.random_nets import RandomNet, randomise_batchnorm
from tpp.models import create_model, example_inputs, list_models

IMAGENET = {"resnet18", "resnet34", "resnet50"}


def _zeroed_vs_pruned(model: nn.Module, inputs: torch.Tensor, probe: torch.Tensor, **kwargs) -> tuple[float, int, int]:
    pruner = tpp.TPPPruner(model, inputs, **kwargs)
    pruner.zero_pruned()
    model.eval()
    with torch.no_grad():
        reference = model(probe)
    before = sum(p.numel() for p in model.parameters())
    pruned = pruner.prune()
    pruned.eval()
    with torch.no_grad():
        after = pruned(probe)
    return float((reference - after).abs().max()), before, sum(p.numel() for p in pruned.parameters())


@pytest.mark.parametrize("scope", ["internal", "all"])
@pytest.mark.parametrize("name", list_models())
def test_every_registry_model_prunes_exactly(name: str, scope: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10)
    randomise_batchnorm(model, torch.Generator().manual_seed(1))
    size = 64 if name in IMAGENET else 32
    inputs = example_inputs(name, batch_size=2, image_size=size)
    probe = torch.randn(4, 3, size, size)
    error, before, after = _zeroed_vs_pruned(model, inputs, probe, ratio=0.5, scope=scope)
    assert error < 1e-5
    assert after < before


def test_option_a_shortcut_all_scope_prunes_only_padding_channels() -> None:
    model = create_model("resnet20")
    inputs = example_inputs("resnet20", batch_size=2)
    pruner = tpp.TPPPruner(model, inputs, ratio=0.9, scope="all")
    # stage 2 and 3 residual streams: only their zero-padded channels can go, at most 16 of 32 / 32 of 64
    stage_units = [u for u in pruner.units if len(u.rows) > 1]
    assert {len(pruner.pruned_indices[u.name]) for u in stage_units} >= {16}
    pruned = pruner.prune()
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)


blocks = st.lists(
    st.one_of(
        st.tuples(st.just("conv"), st.integers(2, 12), st.just(0)),
        st.tuples(st.just("res"), st.integers(2, 12), st.just(0)),
        st.tuples(st.just("cat"), st.integers(2, 8), st.integers(2, 8)),
        st.tuples(st.just("dw"), st.just(0), st.just(0)),
        st.tuples(st.just("pool"), st.just(0), st.just(0)),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    blocks=blocks,
    stem=st.integers(2, 12),
    bn=st.booleans(),
    ratio=st.sampled_from([0.2, 0.5, 0.8]),
    scope=st.sampled_from(["internal", "all"]),
    seed=st.integers(0, 2**16),
)
def test_random_architectures_prune_exactly(blocks, stem, bn, ratio, scope, seed) -> None:
    torch.manual_seed(seed)
    model = RandomNet(blocks, stem, bn=bn)
    randomise_batchnorm(model, torch.Generator().manual_seed(seed))
    inputs = torch.randn(2, 3, 16, 16)
    assume(sum(b[0] == "pool" for b in blocks) <= 4)  # a fifth pooling shrinks 16 px to nothing: no valid network
    probe = torch.randn(3, 3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            error, before, after = _zeroed_vs_pruned(model, inputs, probe, ratio=ratio, scope=scope)
        except tpp.TPPError as refusal:
            # allowed: a clear refusal when nothing is prunable; never a wrong model
            assert "no prunable layer" in str(refusal) or "selects no filter" in str(refusal)
            return
    assert error < 1e-5
    assert after < before


def test_grouped_convolution_is_left_out_with_a_warning() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, groups=4),
        nn.ReLU(),
        nn.Conv2d(8, 6, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.LazyLinear(4),
    )
    inputs = torch.randn(1, 3, 8, 8)
    model(inputs)
    with pytest.warns(UserWarning, match="grouped convolution"):
        pruner = tpp.TPPPruner(model, inputs, ratio=0.5, scope="all")
    assert "0" not in pruner.pruned_indices  # the conv feeding the grouped conv stays whole
    pruned = pruner.prune()
    assert pruned(inputs).shape == (1, 4)


def test_wrapped_model_dataparallel() -> None:
    model = nn.DataParallel(create_model("resnet20"))
    inputs = example_inputs("resnet20", batch_size=2)
    pruner = tpp.TPPPruner(model, inputs, ratio={"*layer*.conv1": 0.5})
    assert all(not name.startswith("module.") for name in pruner.pruned_indices)
    pruned = pruner.prune()
    assert isinstance(pruned, nn.DataParallel)
    assert pruned.module.layer1[0].conv1.out_channels == 8
