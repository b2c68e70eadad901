"""Tests of tpp.metrics.jacobian: exactness, estimator accuracy and absence of side effects."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import tpp
from tpp.metrics.jacobian import JSVResult, _exact_chunk, jacobian_singular_values
from tpp.models import create_model, example_inputs

RTOL = 1e-4


def reference_jsv(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The official definition (docs/method.md#jsv): K backward passes, one-hot grad_output, SVD per example.

    Uses the model's current mode (train mode: BatchNorm batch statistics, batch-sum Jacobian).
    The SVD runs in float64 so that the reference itself adds no rounding.
    """
    x = x.clone().requires_grad_(True)
    out = model(x)
    rows = []
    for k in range(out.shape[1]):
        one_hot = torch.zeros_like(out)
        one_hot[:, k] = 1
        (g,) = torch.autograd.grad(out, x, one_hot, retain_graph=True)
        rows.append(g.flatten(1))
    return torch.linalg.svdvals(torch.stack(rows, 1).double())


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.double() - b.double()).abs() / b.double().abs()).max())


@pytest.fixture(scope="module")
def resnet20() -> nn.Module:
    torch.manual_seed(0)
    return create_model("resnet20", num_classes=10)


@pytest.fixture(scope="module")
def mlp() -> nn.Module:
    torch.manual_seed(0)
    return create_model("mlp7_linear", num_classes=10, in_channels=1)


def test_exported_from_package() -> None:
    assert tpp.jacobian_singular_values is jacobian_singular_values


@pytest.mark.parametrize("name", ["mlp7_linear", "resnet20"])
def test_exact_vs_per_class_backward(name: str, mlp: nn.Module, resnet20: nn.Module) -> None:
    model = mlp if name == "mlp7_linear" else resnet20
    x = example_inputs(model, batch_size=5, seed=1)
    res = jacobian_singular_values(model, x)
    ref = reference_jsv(copy.deepcopy(model).eval(), x)
    assert isinstance(res, JSVResult) and not res.estimated
    assert res.singular_values.shape == (5, 10)
    assert rel_err(res.singular_values, ref) < RTOL
    assert torch.all(res.singular_values[:, :-1] >= res.singular_values[:, 1:])  # descending
    assert res.mean == pytest.approx(float(ref.mean()), rel=RTOL)
    assert res.std == pytest.approx(float(ref.std(correction=0)), rel=1e-3)
    assert res.condition_number == pytest.approx(float((ref[:, 0] / ref[:, -1]).mean()), rel=1e-3)


def test_train_mode_matches_batch_sum_reference(resnet20: nn.Module) -> None:
    x = example_inputs(resnet20, batch_size=6, seed=2)
    res = jacobian_singular_values(resnet20, x, train_mode=True)
    ref = reference_jsv(copy.deepcopy(resnet20).train(), x)
    assert rel_err(res.singular_values, ref) < RTOL
    # BatchNorm couples the batch: the train-mode values differ from the eval-mode ones
    assert rel_err(jacobian_singular_values(resnet20, x).singular_values, ref) > 1e-2


def test_batched_and_looped_vjps_agree(mlp: nn.Module) -> None:
    x = example_inputs(mlp, batch_size=4, seed=3)
    with torch.enable_grad():
        (a, _), (b, _) = _exact_chunk(mlp, x, True, None), _exact_chunk(mlp, x, False, None)
    assert a is not None and b is not None and rel_err(a, b) < RTOL


def test_linear_net_is_product_of_weights(mlp: nn.Module) -> None:
    prod = None
    for layer in mlp.modules():
        if isinstance(layer, nn.Linear):
            w = layer.weight.detach().double()
            prod = w if prod is None else w @ prod
    expected = torch.linalg.svdvals(prod)
    res = jacobian_singular_values(mlp, example_inputs(mlp, batch_size=3, seed=4))
    for row in res.singular_values:  # the same Jacobian for every input
        assert rel_err(row, expected) < RTOL


def test_orthogonal_map_has_unit_jsv() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(3 * 8 * 8, 10, bias=True)
    nn.init.orthogonal_(linear.weight)  # 10 orthonormal rows
    model = nn.Sequential(nn.Flatten(), linear)
    res = jacobian_singular_values(model, torch.randn(7, 3, 8, 8))
    torch.testing.assert_close(res.singular_values, torch.ones(7, 10, dtype=torch.float64))
    assert res.mean == pytest.approx(1.0) and res.condition_number == pytest.approx(1.0)
    assert res.std < 1e-6 and res.num_condition_ignored == 0


def test_zero_jacobian_condition_number_ignored() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    nn.init.zeros_(model[1].weight)
    res = jacobian_singular_values(model, torch.randn(2, 3, 2, 2))
    assert res.max == 0.0 and res.num_condition_ignored == 2
    assert res.condition_number != res.condition_number  # NaN: every example was left out
    d = res.as_dict()
    assert d["num_examples"] == 2 and all(isinstance(v, (float, int, bool)) for v in d.values())


@pytest.mark.parametrize("train_mode", [False, True])
def test_no_side_effects(resnet20: nn.Module, train_mode: bool) -> None:
    model = copy.deepcopy(resnet20).train()
    with torch.no_grad():  # non-trivial running stats, and a mixed mode to restore
        model(example_inputs(model, batch_size=8, seed=5))
    model.layer1.eval()
    modes = {name: m.training for name, m in model.named_modules()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    x = example_inputs(model, batch_size=4, seed=6).double()  # other dtype: converted, not mutated
    x_before = x.clone()
    jacobian_singular_values(model, x, train_mode=train_mode)
    assert {name: m.training for name, m in model.named_modules()} == modes
    for name, b in model.named_buffers():
        assert torch.equal(b, buffers[name]), name
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(x, x_before) and not x.requires_grad


def test_loader_reads_only_max_batches(mlp: nn.Module) -> None:
    served = []

    def loader(n_ok: int):
        for i in range(100):
            if i >= n_ok:
                raise AssertionError("read past max_batches")
            served.append(i)
            yield example_inputs(mlp, batch_size=3, seed=i), torch.zeros(3, dtype=torch.long)

    res = jacobian_singular_values(mlp, loader(2), max_batches=2)
    assert res.num_examples == 6 and served == [0, 1]
    res = jacobian_singular_values(mlp, (example_inputs(mlp, batch_size=2, seed=i) for i in range(5)))
    assert res.num_examples == 2  # default max_batches=1, bare tensors


def test_chunking_matches_unchunked(resnet20: nn.Module) -> None:
    x = example_inputs(resnet20, batch_size=5, seed=7)
    full = jacobian_singular_values(resnet20, x)
    chunked = jacobian_singular_values(resnet20, x, chunk_size=2)
    assert rel_err(chunked.singular_values, full.singular_values) < RTOL


def test_estimate_on_100_classes() -> None:
    torch.manual_seed(0)
    model = create_model("mlp7_linear", num_classes=100, in_channels=1)
    x = example_inputs(model, batch_size=64, seed=8)
    exact = jacobian_singular_values(model, x)
    est = jacobian_singular_values(model, x, num_directions=80, generator=torch.Generator().manual_seed(0))
    assert est.estimated and not exact.estimated
    # Documented accuracy (jacobian._slq_chunk): bias < 1%, std ~2% at this size; 10% is ~5 sd.
    assert est.mean == pytest.approx(exact.mean, rel=0.10)
    assert est.std == pytest.approx(exact.std, rel=0.10)
    # Ritz values lie inside the spectrum: inner bounds of the extremes
    assert est.max <= exact.max * (1 + 1e-6) and est.min >= exact.min * (1 - 1e-6)
    # R >= K is exact
    assert not jacobian_singular_values(model, x[:4], num_directions=100).estimated


def test_default_estimates_above_100_classes() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 150))
    res = jacobian_singular_values(model, torch.randn(2, 3, 4, 4), generator=torch.Generator().manual_seed(0))
    assert res.estimated and res.singular_values.shape == (2, 100 // 5)


def test_invalid_arguments(mlp: nn.Module) -> None:
    x = example_inputs(mlp, batch_size=2)
    with pytest.raises(ValueError, match="eval mode"):
        jacobian_singular_values(mlp, x, train_mode=True, chunk_size=1)
    with pytest.raises(ValueError, match="eval mode"):
        jacobian_singular_values(mlp, x, train_mode=True, num_directions=4)
    with pytest.raises(ValueError, match="max_batches"):
        jacobian_singular_values(mlp, [x], max_batches=0)
    with pytest.raises(ValueError, match="no batch"):
        jacobian_singular_values(mlp, [])


def test_jsv_cli_prints_the_summary(tmp_path, capsys):
    from tpp.cli.main import main

    model = create_model("mlp7_linear", in_channels=1)
    torch.save(model.state_dict(), tmp_path / "base.pt")
    assert (
        main(
            [
                "jsv",
                "--checkpoint",
                str(tmp_path / "base.pt"),
                "--model",
                "mlp7_linear",
                "--dataset",
                "mnist_subset",
                "--batch-size",
                "16",
                "--json",
            ]
        )
        == 0
    )
    import json

    summary = json.loads(capsys.readouterr().out)
    assert summary["num_examples"] == 16 and summary["mean"] > 0


def test_train_mode_leaves_the_random_stream_alone() -> None:
    """The paper's train-mode protocol runs dropout; the caller's next random draws must not change."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Dropout(0.5), nn.Linear(16, 4))
    x = torch.randn(3, 12)
    state = torch.get_rng_state()
    jacobian_singular_values(model, x, train_mode=True)
    assert torch.equal(torch.get_rng_state(), state)
