"""Data-driven importance criteria (tpp.pruning.calibration) and make_importance: tiny random models.

Activation (Wanda-sp) scores equal a hand computation, choose other channels than L1 where the
activations say so, and the chosen channels still prune exactly; Taylor scores have one entry per
channel, leave ``.grad`` as it was, and give 0 to a channel whose filters are zero.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

import tpp
from tests.zoo.lm_models import SPECS
from tpp.errors import ConfigError
from tpp.pruning import GReg1Pruner, L1Pruner, OrthRegThenL1Pruner
from tpp.pruning.calibration import IMPORTANCES, ActivationImportance, TaylorImportance, make_importance
from tpp.pruning.importance import L1Importance


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3))


def _pruner(model, inputs, importance=None, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what stays whole (attention, the residual stream) is tested elsewhere
        return tpp.TPPPruner(model, inputs, importance=importance, **options)


def _llama(uneven: bool = False):
    torch.manual_seed(0)
    model = SPECS["llama"].build().double().eval()
    if uneven:  # make the MLP activations uneven: some neurons fire 50x stronger, their down_proj columns 50x weaker
        with torch.no_grad():
            for layer in model.model.layers:
                layer.mlp.up_proj.weight[:32] *= 50
                layer.mlp.down_proj.weight[:, :32] /= 50
    return model


def _logits(model, inputs):
    with torch.no_grad():
        return model(**inputs, use_cache=False).logits


def test_activation_scores_are_the_input_norm_times_the_consumer_column_l1():
    model = _mlp()
    batches = [torch.randn(5, 6), torch.randn(7, 6)]
    pruner = _pruner(model, batches[0], ratio=0.5)
    unit = pruner.units[0]
    with torch.no_grad():
        hidden = torch.cat([torch.relu(model[0](x)) for x in batches]).double()
    expected = hidden.norm(dim=0) * model[2].weight.detach().double().abs().sum(dim=0)
    assert torch.allclose(ActivationImportance(model, batches)(unit).double(), expected, rtol=1e-6)


def test_activation_importance_prunes_a_language_model_exactly_and_differs_from_l1():
    spec = SPECS["llama"]
    inputs = spec.inputs()
    model = _llama(uneven=True)
    model.train()
    importance = ActivationImportance(model, [inputs, {"input_ids": inputs["input_ids"].flip(0)}])
    pruner = _pruner(model, inputs, importance, ratio={"*.mlp.*": 0.5})
    assert model.training  # flags restored
    chosen = pruner.pruned_indices
    l1 = {u.name: sorted(torch.sort(L1Importance()(u), stable=True).indices[:32].tolist()) for u in pruner.units}
    assert chosen.keys() == l1.keys() and chosen != l1
    # L1 keeps the loud neurons' 50x filters; the activation score sees 50x inputs to 50x weaker columns and
    # so chooses exactly as on the model before the rescaling, which computes the same function
    assert all(set(l1[name]).isdisjoint(range(32)) for name in l1)
    assert any(set(chosen[name]) & set(range(32)) for name in chosen)
    even = _llama()
    assert (
        _pruner(
            even,
            inputs,
            ActivationImportance(even, [inputs, {"input_ids": inputs["input_ids"].flip(0)}]),
            ratio={"*.mlp.*": 0.5},
        ).pruned_indices
        == chosen
    )
    model.eval()
    pruner.zero_pruned()
    zeroed = _logits(model, inputs)
    pruned = pruner.prune()
    assert pruned.config.intermediate_size == 32
    after = _logits(pruned, inputs)
    assert float((after - zeroed).abs().max() / zeroed.abs().max()) < 1e-12


def test_whole_heads_are_scored_through_o_proj_without_falling_back_to_l1():
    spec = SPECS["llama"]
    model = _llama()
    pruner = _pruner(model, spec.inputs(), ratio={"*self_attn*": 0.5}, heads=True)
    unit = pruner.units[0]
    assert unit.heads is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to L1
        ids = spec.inputs()["input_ids"]
        for importance in (
            ActivationImportance(model, [spec.inputs()]),
            TaylorImportance(model, [(ids[:, :-1], ids[:, 1:])]),
        ):
            scores = importance(unit)
            assert scores.shape == (unit.channels,) and bool((scores > 0).all())


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 6, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 5),
    )


def _grads(model):
    return {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}


def test_taylor_on_a_cnn_scores_every_channel_leaves_grads_and_gives_zero_to_a_zero_filter():
    model = _cnn()
    x = torch.randn(4, 3, 8, 8)
    pruner = _pruner(model, x, ratio=0.5, scope="all")
    with torch.no_grad():
        model[0].weight[2] = 0
        # channel 2 is 0 after BN (eval mode, fresh statistics, beta 0) and the ReLU: no gradient reaches
        # its consumer columns or its gamma
        model[0].bias[2] = 0
        model[1].bias[1] = 0.5  # a beta that counts, elsewhere
    model[3].weight.grad = torch.ones_like(model[3].weight)  # a user's gradient, left alone
    model[-1].requires_grad_(False)  # a frozen classifier: its input columns are scored, and it stays frozen
    before, flags = _grads(model), [p.requires_grad for p in model.parameters()]
    importance = TaylorImportance(model, [(x, torch.tensor([0, 1, 2, 3])), (x.flip(0), torch.tensor([4, 3, 2, 1]))])
    assert [u.name for u in pruner.units] == ["0", "3"]
    for unit in pruner.units:
        scores = importance(unit)
        assert scores.shape == (unit.channels,) and bool((scores >= 0).all())
    scores = importance(pruner.units[0])
    assert scores[2] == 0 and bool((scores[torch.arange(8) != 2] > 0).all())
    after = _grads(model)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert after.keys() == before.keys()
    assert all((before[k] is None and after[k] is None) or torch.equal(before[k], after[k]) for k in before)


def test_taylor_on_a_language_model():
    spec = SPECS["llama"]
    ids = spec.inputs()["input_ids"]
    model = _llama()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.gate_proj.weight[5] = 0
            layer.mlp.up_proj.weight[5] = 0
    pruner = _pruner(model, {"input_ids": ids}, ratio={"*.mlp.*": 0.5})
    importance = make_importance("taylor", model, [(ids[:, :-1], ids[:, 1:])])
    for unit in pruner.units:
        scores = importance(unit)
        assert scores.shape == (64,) and scores[5] == 0 and int((scores > 0).sum()) == 63
    assert all(p.grad is None for p in model.parameters())
    chosen = _pruner(model, {"input_ids": ids}, importance, ratio={"*.mlp.*": 0.5}).pruned_indices
    assert all(5 in roots for roots in chosen.values())


def test_calibrated_importances_work_with_the_other_methods():
    model, x, y = _mlp(), torch.randn(5, 6), torch.tensor([0, 1, 2, 0, 1])
    for cls in (L1Pruner, GReg1Pruner, OrthRegThenL1Pruner):
        for importance in (ActivationImportance(model, [x]), TaylorImportance(model, [(x, y)])):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pruner = cls(model, x, ratio=0.5, importance=importance)
            assert len(pruner.pruned_indices["0"]) == 5


def test_make_importance_names_and_errors():
    model = _mlp()
    assert IMPORTANCES == ("l1", "activation", "taylor")
    assert isinstance(make_importance("l1", model), L1Importance)
    assert isinstance(make_importance("activation", model, [torch.randn(2, 6)]), ActivationImportance)
    for name in ("activation", "taylor"):
        with pytest.raises(ConfigError, match="needs calibration batches") as error:
            make_importance(name, model)
        assert "\n" not in str(error.value)
        with pytest.raises(ConfigError, match="needs calibration batches"):
            make_importance(name, model, [])
    with pytest.raises(ConfigError, match="l1, activation, taylor"):
        make_importance("wanda", model)
    with pytest.raises(ConfigError, match="pairs"):
        make_importance("taylor", model, [torch.randn(2, 6)])


def test_activation_reads_conv1d_consumers_transposed_and_measures_again_after_a_weight_change():
    spec = SPECS["gpt2"]
    torch.manual_seed(0)
    model, inputs = spec.build().double().eval(), spec.inputs()
    pruner = _pruner(model, inputs, ratio={"*.mlp.*": 0.5})
    unit = next(u for u in pruner.units if u.name == "transformer.h.0.mlp.c_fc")
    consumer = model.transformer.h[0].mlp.c_proj  # Conv1D, weight [in, out]
    seen = []
    hook = consumer.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    importance = ActivationImportance(model, [inputs])
    _logits(model, inputs)
    hook.remove()
    expected = seen[0].reshape(-1, seen[0].shape[-1]).norm(dim=0) * consumer.weight.detach().abs().sum(dim=1)
    assert torch.allclose(importance(unit).double(), expected, rtol=1e-6)
    producer = model.transformer.h[0].mlp.c_fc  # Conv1D: neuron 3 is column 3
    with torch.no_grad():  # an in-place change: the activations are measured again, neuron 3's are now 0
        producer.weight[:, 3] = 0
        producer.bias[3] = 0
    scores = importance(unit)
    assert scores[3] == 0 and torch.allclose(scores[:3].double(), expected[:3], rtol=1e-6)


class _Skippable(nn.Module):
    """Linear-ReLU-Linear whose second layer a keyword can skip."""

    def __init__(self):
        super().__init__()
        self.first, self.second, self.head = nn.Linear(6, 10), nn.Linear(10, 10), nn.Linear(10, 3)

    def forward(self, x, skip=False):
        h = torch.relu(self.first(x))
        return self.head(h if skip else torch.relu(self.second(h)))


def test_a_unit_whose_consumer_never_ran_is_scored_by_l1_with_one_warning():
    torch.manual_seed(0)
    model, x = _Skippable(), torch.randn(4, 6)
    pruner = _pruner(model, x, ratio={"first": 0.5})
    unit = pruner.units[0]
    importance = ActivationImportance(model, [{"x": x, "skip": True}])
    with pytest.warns(UserWarning, match="activation importance cannot score first") as record:
        scores = importance(unit)
        importance(unit)
    assert len(record) == 1 and torch.equal(scores, L1Importance()(unit))
