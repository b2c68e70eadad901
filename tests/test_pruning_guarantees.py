"""What the pruner promises on models nobody here wrote: exact or refused up front, never half-pruned.

Real ``transformers`` models (small configs, random weights) and minimal hand-made repros of each
failure mode: channels normalised jointly, heads split by a reshape, depthwise-coupled expansions,
dict inputs, non-finite values, a removal that fails half-way.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import transformers  # a dev dependency: missing, the module fails instead of skipping

import tpp
from tpp.errors import PruningError
from tpp.pruning import removal
from tpp.util.inputs import call_model, logits_of


def _vit() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=10,
    )
    return transformers.ViTForImageClassification(config)


def _state(model: nn.Module) -> dict[str, tuple[int, torch.Tensor]]:
    return {k: (id(v), v.detach().clone()) for k, v in model.state_dict(keep_vars=True).items()}


def _same_state(model: nn.Module, before: dict[str, tuple[int, torch.Tensor]]) -> bool:
    """The same tensor objects with the same values (NaN equal to NaN)."""
    now = model.state_dict(keep_vars=True)
    return now.keys() == before.keys() and all(
        id(now[k]) == before[k][0]
        and now[k].shape == before[k][1].shape
        and torch.allclose(now[k].detach(), before[k][1], rtol=0, atol=0, equal_nan=True)
        for k in now
    )


def _outputs(model: nn.Module, inputs) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return logits_of(call_model(model, inputs))


def test_layernorm_over_channels_is_refused_at_construction_with_one_line():
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 4))
    with pytest.raises(PruningError, match="normalised jointly") as info:
        tpp.TPPPruner(model, torch.randn(2, 8), ratio=0.5)
    assert "\n" not in str(info.value) and "scope='all'" not in str(info.value)


def test_layernorm_unit_is_left_out_and_the_rest_pruned_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 12), nn.LayerNorm(12), nn.Linear(12, 4))
    inputs = torch.randn(3, 8)
    with pytest.warns(UserWarning, match=r"pruning 8 of the 14 channels asked for.*normalised jointly.*: 2$"):
        pruner = tpp.TPPPruner(model, inputs, ratio=0.5)
    assert list(pruner.pruned_indices) == ["0"]
    pruner.zero_pruned()
    reference = _outputs(model, inputs)
    pruned = pruner.prune()
    assert torch.allclose(_outputs(pruned, inputs), reference, atol=1e-6)
    assert pruned[0].out_features == 8 and pruned[2].out_features == 12


def test_transformers_vit_attention_is_left_whole_and_mlp_pruned_exactly_with_dict_inputs(tmp_path):
    model = _vit()
    inputs = {"pixel_values": torch.randn(2, 3, 32, 32)}
    with pytest.warns(UserWarning, match=r"split into attention heads.*\[2, 17, 32\] -> \[2, 17, 4, 8\].*v_proj"):
        pruner = tpp.TPPPruner(model, inputs, ratio=0.5, scope="all")
    assert sorted(pruner.pruned_indices) == ["vit.layers.0.mlp.fc1", "vit.layers.1.mlp.fc1"]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    for _ in range(2):  # the README loop, with a dict input and a ModelOutput
        loss = logits_of(call_model(model, inputs)).square().mean() + pruner.penalty()
        optimizer.zero_grad()
        loss.backward()
        pruner.regularize()
        optimizer.step()
        pruner.step()
    pruner.zero_pruned()
    reference = _outputs(model, inputs)
    before = tpp.count(model, inputs)
    pruned = pruner.prune(optimizer)
    assert (_outputs(pruned, inputs) - reference).abs().max() <= 1e-5 * max(1.0, float(reference.abs().max()))
    assert tpp.count(pruned, inputs).params < before.params
    path = tpp.save_pruned(pruned, tmp_path / "vit.pt")
    assert torch.load(path, weights_only=True)["tpp_plan"]["inputs"]["kind"] == "dict"
    loaded = tpp.load_pruned(path, base_model=_vit())
    assert torch.equal(_outputs(loaded, inputs), _outputs(pruned, inputs))
    assert tpp.jacobian_singular_values(pruned.eval(), inputs["pixel_values"]).mean > 0


def test_depthwise_coupled_expansions_are_internal():
    torch.manual_seed(0)
    config = transformers.MobileNetV1Config(image_size=32, depth_multiplier=0.25, num_labels=10)
    model = transformers.MobileNetV1ForImageClassification(config)
    inputs = torch.randn(2, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left out, so nothing to warn about
        pruner = tpp.TPPPruner(model, inputs, ratio=0.5, scope="internal")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups == 1]
    assert len(pruner.units) == len(convs)  # every pointwise layer's channels, each through its depthwise conv
    assert [len(u.rows) for u in pruner.units] == [2] * (len(convs) - 1) + [1]  # the last one feeds the head


def test_failed_prune_leaves_model_optimizer_and_phase_as_they_were():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 1),
        nn.Flatten(),
        nn.LazyLinear(3),
    )
    inputs = torch.randn(2, 3, 8, 8)
    model(inputs)
    pruner = tpp.TPPPruner(model, inputs, ratio=0.5, stabilize_iters=5, reg_step=0.5, reg_interval=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = model(inputs).square().mean() + pruner.penalty()
    loss.backward()
    optimizer.step()
    pruner.step()
    groups = [list(map(id, g["params"])) for g in optimizer.param_groups]
    momentum = {id(p): s["momentum_buffer"].clone() for p, s in optimizer.state.items()}
    before, phase = _state(model), pruner.phase

    # code the pruner never saw at construction hard-codes conv 3's input width: removing unit 0 breaks it
    model[3].register_forward_pre_hook(
        lambda module, args: args[0].view(args[0].shape[0], 8, -1)[..., :36].view(-1, 8, 6, 6)
    )
    with pytest.raises(
        PruningError,
        match=r"^removing the zeroed channels of 0 would change the network: the model "
        r"no longer runs \(Given groups=1.*pass '0' in ignored_layers$",
    ) as info:
        pruner.prune(optimizer)
    assert "\n" not in str(info.value)
    assert _same_state(model, before) and pruner.phase == phase
    assert [list(map(id, g["params"])) for g in optimizer.param_groups] == groups
    assert all(torch.equal(s["momentum_buffer"], momentum[id(p)]) for p, s in optimizer.state.items())
    assert model[0].out_channels == 8 and model[3].in_channels == 8


def test_interrupted_removal_is_undone(monkeypatch):
    torch.manual_seed(0)
    model = tpp.create_model("resnet20")
    inputs = torch.randn(2, 3, 32, 32)
    pruner = tpp.TPPPruner(model, inputs, ratio={"*layer*.conv1": 0.5})
    before = _state(model)
    calls = []

    def interrupted(graph, unit, roots):
        calls.append(unit.name)
        if len(calls) == 5:
            raise KeyboardInterrupt
        original(graph, unit, roots)

    original = removal._remove_unit
    monkeypatch.setattr(removal, "_remove_unit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pruner.prune()
    assert _same_state(model, before) and pruner.phase == "regularize"
    monkeypatch.setattr(removal, "_remove_unit", original)
    assert pruner.prune().layer1[0].conv1.out_channels == 8  # the pruner still works afterwards


def test_non_finite_values_are_errors_with_a_hint():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    inputs = torch.randn(2, 4)
    pruner = tpp.TPPPruner(model, inputs, ratio=0.5)
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    before = _state(model)
    with pytest.raises(PruningError, match="not finite after regularisation.*lower gram_weight or reg_step"):
        pruner.prune()
    assert _same_state(model, before)
    with pytest.raises(PruningError, match="not finite on example_inputs"):
        tpp.TPPPruner(model, inputs, ratio=0.5)


def test_hints_are_true():
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 4))
    for scope in ("internal", "all"):
        with pytest.raises(PruningError) as info:
            tpp.TPPPruner(model, torch.randn(2, 8), ratio=0.5, scope=scope)
        assert "scope=" + repr("all" if scope == "internal" else "internal") not in str(info.value).split(":")[-1]
    resnet = tpp.create_model("resnet20")
    with pytest.raises(PruningError, match="use scope='all': these layers are residual-coupled"):
        tpp.TPPPruner(resnet, torch.randn(2, 3, 32, 32), ratio={"*layer*.conv2": 0.5})
    with pytest.raises(PruningError) as info:
        tpp.TPPPruner(resnet, torch.randn(2, 3, 32, 32), ratio={"*layer*.conv9": 0.5})
    assert "scope='all'" not in str(info.value)


def test_a_model_that_does_not_run_is_one_clean_line():
    model = nn.Sequential(nn.Linear(8, 4))
    with pytest.raises(PruningError, match="tracing the model on example_inputs failed") as info:
        tpp.TPPPruner(model, torch.randn(2, 5), ratio=0.5)
    assert "\n" not in str(info.value)


def test_construction_leaves_the_model_and_the_random_state_untouched():
    model = _vit()
    inputs = torch.randn(2, 3, 32, 32)
    before = _state(model)
    rng = torch.get_rng_state()
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tpp.TPPPruner(model, inputs, ratio=0.5, scope="all")
    assert _same_state(model, before) and torch.equal(torch.get_rng_state(), rng)
    assert all(m.training for m in model.modules())
