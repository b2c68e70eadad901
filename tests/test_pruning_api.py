"""The TPPPruner contract: selection, lambda schedule, penalties, zero-out, resume, bad input."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

import tpp
from tests.loop import pruner_step
from tpp.errors import ConfigError, PruningError
from tpp.models import create_model, example_inputs


def _pruner(name="resnet20", **kwargs):
    torch.manual_seed(0)
    model = create_model(name)
    inputs = example_inputs(name, batch_size=2)
    return model, tpp.TPPPruner(model, inputs, **kwargs)


def test_selects_smallest_l1_filters_with_ceil_and_keeps_one():
    model, pruner = _pruner(ratio={"*layer*.conv1": 0.3})
    weight = model.layer1[0].conv1.weight.detach()
    expected = torch.argsort(weight.abs().flatten(1).mean(1), stable=True)[:5].sort().values  # ceil(0.3*16)=5
    assert pruner.pruned_indices["layer1.0.conv1"] == expected.tolist()
    _, extreme = _pruner(ratio=0.99)
    assert all(len(v) == {16: 15, 32: 31, 64: 63}[len(v) + 1] for v in extreme.pruned_indices.values())


def test_lambda_schedule_and_phases():
    _, pruner = _pruner(
        ratio=0.5, reg_step=0.1, reg_interval=2, reg_ceiling=0.5, stabilize_iters=4, zero_out_interval=1
    )
    seen = []
    while not pruner.done:
        seen.append((pruner.iteration, round(pruner.reg_value, 6), pruner.phase))
        pruner.step()
    assert seen[0] == (0, 0.0, "regularize")
    assert (3, 0.1, "regularize") in seen and (9, 0.4, "regularize") in seen
    assert (10, 0.5, "stabilize") in seen  # lambda reaches the ceiling at t = 2 * 0.5 / 0.1
    assert seen[-1] == (13, 0.5, "stabilize")
    assert pruner.iteration == 14 and pruner.phase == "done" and pruner.reg_value == 0.5


def test_gram_penalty_equals_the_official_definition():
    model, pruner = _pruner(ratio={"*layer1.0.conv1": 0.5}, reg_step=0.25, reg_interval=1, gram_weight=1000.0)
    pruner.step()  # lambda = 0.25
    weight = model.layer1[0].conv1.weight.flatten(1)
    gram = weight @ weight.t()
    target = gram.detach().clone()
    for j in pruner.pruned_indices["layer1.0.conv1"]:  # the official per-index loop, as reference
        target[j, :] = 0
        target[:, j] = 0
    expected = 1000.0 * 0.25 * F.mse_loss(gram, target)
    assert torch.allclose(pruner.penalty(), expected, rtol=1e-5)
    # gradient reaches kept filters too (cross terms de-correlate them from the pruned ones)
    pruner.penalty().backward()
    kept = [i for i in range(16) if i not in pruner.pruned_indices["layer1.0.conv1"]]
    assert model.layer1[0].conv1.weight.grad[kept].abs().sum() > 0


def test_regularize_adds_growing_l2_to_pruned_rows_and_bn_only():
    model, pruner = _pruner(ratio={"*layer1.0.conv1": 0.5}, reg_step=0.5, reg_interval=1)
    pruner.step()
    conv, bn = model.layer1[0].conv1, model.layer1[0].bn1
    with torch.no_grad():
        bn.bias.uniform_(-1, 1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    pruner.regularize()
    pruned = pruner.pruned_indices["layer1.0.conv1"]
    kept = [i for i in range(16) if i not in pruned]
    assert torch.allclose(conv.weight.grad[pruned], 0.5 * conv.weight[pruned])
    assert torch.count_nonzero(conv.weight.grad[kept]) == 0
    assert torch.allclose(bn.weight.grad[pruned], 0.5 * bn.weight[pruned])
    assert torch.allclose(bn.bias.grad[pruned], 0.5 * bn.bias[pruned])
    assert torch.count_nonzero(bn.weight.grad[kept]) == 0
    assert torch.count_nonzero(model.layer1[1].conv1.weight.grad) == 0


def test_bn_reg_and_weight_reg_switches():
    model, pruner = _pruner(ratio={"*layer1.0.conv1": 0.5}, reg_step=0.5, reg_interval=1, bn_reg=False)
    pruner.step()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    pruner.regularize()
    assert torch.count_nonzero(model.layer1[0].bn1.weight.grad) == 0
    assert torch.count_nonzero(model.layer1[0].conv1.weight.grad) > 0


def test_stabilisation_zeroes_layers_one_by_one_in_forward_order():
    model, pruner = _pruner(
        ratio={"*layer*.conv1": 0.5}, reg_step=1.0, reg_interval=1, stabilize_iters=1000, zero_out_interval=10
    )
    pruner.step()  # t = 1: lambda hits the ceiling, stabilisation starts
    first, last = model.layer1[0].conv1, model.layer3[2].conv1
    rows_first = pruner.pruned_indices["layer1.0.conv1"]
    rows_last = pruner.pruned_indices["layer3.2.conv1"]
    for _ in range(30):
        pruner.step()
    assert torch.count_nonzero(first.weight[rows_first]) == 0
    assert torch.count_nonzero(model.layer1[0].bn1.weight[rows_first]) == 0
    assert torch.count_nonzero(last.weight[rows_last]) > 0  # its turn comes later
    while not pruner.done:
        pruner.step()
    assert torch.count_nonzero(last.weight[rows_last]) == 0


def test_gram_every_k_iterations_is_k_times_as_strong_and_decorrelates_alike():
    ratio = {"*layer1.0.conv1": 0.5}
    options = dict(ratio=ratio, reg_step=0.25, reg_interval=1, gram_weight=1000.0)
    model, every_step = _pruner(**options)
    _, every_third = _pruner(**options, gram_every=3)
    for iteration in range(1, 7):
        every_step.step(), every_third.step()
        expected = 3 * every_step.penalty() if iteration % 3 == 0 else torch.zeros(())
        assert torch.allclose(every_third.penalty(), expected, rtol=1e-6)
    with pytest.raises(ConfigError, match="gram_every"):
        _pruner(ratio=ratio, gram_every=0)

    def coupling(gram_every):  # |W_p W_k^T| after 30 SGD steps on the gram term and the task loss
        model, pruner = _pruner(**options, gram_every=gram_every, stabilize_iters=1000)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        _train(model, pruner, optimizer, 30, seed=0)
        rows = model.layer1[0].conv1.weight.flatten(1)
        pruned = pruner.pruned_indices["layer1.0.conv1"]
        kept = [i for i in range(rows.shape[0]) if i not in pruned]
        return float((rows[pruned] @ rows[kept].t()).norm().detach())

    untouched = coupling(10**6)  # the term never computed in 30 steps
    assert coupling(1) < 0.5 * untouched and coupling(3) < 0.5 * untouched
    assert coupling(3) == pytest.approx(coupling(1), rel=0.25)


def _train(model, pruner, optimizer, steps, seed):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 3, 32, 32, generator=generator)
        y = torch.randint(0, 10, (8,), generator=generator)
        pruner_step(pruner, optimizer, F.cross_entropy(model(x), y))


def test_state_dict_resume_continues_identically():
    kwargs = dict(ratio={"*layer*.conv1": 0.5}, reg_step=0.2, reg_interval=2, stabilize_iters=6, zero_out_interval=1)
    torch.manual_seed(0)
    base = create_model("resnet20")
    inputs = example_inputs("resnet20", batch_size=2)

    straight = copy.deepcopy(base)
    pruner = tpp.TPPPruner(straight, inputs, **kwargs)
    optimizer = torch.optim.SGD(straight.parameters(), lr=0.01, momentum=0.9)
    _train(straight, pruner, optimizer, 8, seed=1)
    _train(straight, pruner, optimizer, 8, seed=2)

    first = copy.deepcopy(base)
    pruner_a = tpp.TPPPruner(first, inputs, **kwargs)
    optimizer_a = torch.optim.SGD(first.parameters(), lr=0.01, momentum=0.9)
    _train(first, pruner_a, optimizer_a, 8, seed=1)
    saved = copy.deepcopy(
        {"model": first.state_dict(), "opt": optimizer_a.state_dict(), "pruner": pruner_a.state_dict()}
    )

    resumed = copy.deepcopy(base)
    resumed.load_state_dict(saved["model"])  # regularised weights: re-selecting by L1 could differ
    pruner_b = tpp.TPPPruner(resumed, inputs, **kwargs)
    pruner_b.load_state_dict(saved["pruner"])
    optimizer_b = torch.optim.SGD(resumed.parameters(), lr=0.01, momentum=0.9)
    optimizer_b.load_state_dict(saved["opt"])
    _train(resumed, pruner_b, optimizer_b, 8, seed=2)

    assert pruner_b.pruned_indices == pruner.pruned_indices
    assert pruner_b.iteration == pruner.iteration and pruner_b.phase == pruner.phase
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_model_without_batchnorm_runs_the_whole_schedule():
    """The official code crashes here (docs/method.md#official-code): mlp7_linear has no BN after its layers."""
    model, pruner = _pruner(
        "mlp7_linear", ratio=0.5, reg_step=0.25, reg_interval=1, stabilize_iters=20, zero_out_interval=1
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    _train(model, pruner, optimizer, 30, seed=0)
    assert pruner.done
    pruned = pruner.prune(optimizer)
    assert pruned.fc1.out_features == 50 and pruned.fc7.in_features == 50


@pytest.mark.filterwarnings("ignore:tpp. prune.. before pruner.done")  # pruned after 2 iterations on purpose
def test_prune_repoints_the_optimizer_in_place():
    model, pruner = _pruner(ratio={"*layer*.conv1": 0.5})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _train(model, pruner, optimizer, 2, seed=0)
    pruned = pruner.prune(optimizer)
    current = {id(p) for p in pruned.parameters()}
    assert all(id(p) in current for g in optimizer.param_groups for p in g["params"])
    before = pruned.layer1[0].conv1.weight.detach().clone()
    _train(pruned, pruner, optimizer, 1, seed=3)
    assert not torch.equal(before, pruned.layer1[0].conv1.weight)


def test_global_ratio_prunes_about_that_fraction():
    _, pruner = _pruner(ratio=None, global_ratio=0.4, scope="internal")
    pruned = sum(len(v) for v in pruner.pruned_indices.values())
    total = 16 * 3 + 32 * 3 + 64 * 3
    assert abs(pruned / total - 0.4) < 0.01


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(ratio=1.0), ConfigError, "impossible pruning ratio"),
        (dict(ratio=-0.1), ConfigError, "impossible pruning ratio"),
        (dict(ratio="*layr*.conv1:0.5"), PruningError, "matches no prunable layer"),
        (dict(ratio="*layer*.conv1"), ConfigError, "malformed ratio"),
        (dict(ratio={"*layer*.conv2": 0.5}), PruningError, "scope='all'"),
        (dict(ratio=0.5, scope="everything"), ConfigError, "unknown scope"),
        (dict(ratio=0.5, reg_step=0), ConfigError, "reg_step"),
        (dict(ratio=0.5, ignored_layers=["nope"]), ConfigError, "ignored layer"),
    ],
)
def test_bad_input_gives_one_line_errors(kwargs, error, words):
    with pytest.raises(error, match=words) as info:
        _pruner(**kwargs)
    assert "\n" not in str(info.value)


def test_load_state_dict_from_another_model_is_refused():
    _, pruner = _pruner(ratio=0.5)
    _, other = _pruner("mlp7_linear", ratio=0.5)
    with pytest.raises(PruningError, match="another model"):
        pruner.load_state_dict(other.state_dict())


@pytest.mark.filterwarnings("ignore:tpp. prune.. before pruner.done")  # the structure only, on purpose
def test_save_and_load_pruned_round_trip_with_weights_only(tmp_path):
    model, pruner = _pruner(ratio=0.5, scope="all")
    pruned = pruner.prune()
    path = tpp.save_pruned(pruned, tmp_path / "pruned.pt")
    payload = torch.load(path, weights_only=True)  # plain data: no pickled module
    assert payload["tpp_plan"]["history"] and payload["tpp_spec"]["name"] == "resnet20"
    loaded = tpp.load_pruned(path, create_model("resnet20"))
    x = torch.randn(2, 3, 32, 32)
    pruned.eval(), loaded.eval()
    assert torch.allclose(pruned(x), loaded(x))
    with pytest.raises(tpp.TPPError, match="different architecture|does not match"):
        tpp.load_pruned(path, create_model("resnet32"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(tpp.TPPError, match="not a readable"):
        tpp.load_pruned(tmp_path / "junk.pt")


# long filters take the pruned-rows form, short ones (K below about p) the K x K form: both are covered
@pytest.mark.parametrize(
    "shape, ratio",
    [((16, 8, 3, 3), 0.5), ((48, 20), 0.9), ((12, 6), 0.1), ((7, 3, 1, 1), 0.6), ((64, 16), 0.5), ((24, 96), 0.5)],
)
def test_gram_penalty_gradient_equals_the_official_definition(shape, ratio):
    """The penalty is computed from the pruned rows (or the K x K grams) with a closed-form backward:
    value and gradient must be those of the official masked-MSE definition, for every filter."""
    from tpp.pruning.penalties import GramPenalty

    torch.manual_seed(0)
    layer = torch.nn.Conv2d(shape[1], shape[0], shape[2]) if len(shape) == 4 else torch.nn.Linear(shape[1], shape[0])
    pruned = torch.randperm(shape[0])[: max(1, round(ratio * shape[0]))].sort().values
    value = GramPenalty([(layer, pruned)])()
    value.backward()
    ours = layer.weight.grad.clone()
    layer.weight.grad = None
    rows = layer.weight.flatten(1)
    gram = rows @ rows.t()
    target = gram.detach().clone()
    target[pruned, :] = 0
    target[:, pruned] = 0
    official = F.mse_loss(gram, target)
    official.backward()
    torch.testing.assert_close(value, official, rtol=1e-5, atol=0)
    torch.testing.assert_close(ours, layer.weight.grad, rtol=1e-5, atol=1e-8)


def _tiny():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 2),
    )
    return model, torch.randn(2, 3, 8, 8)


def test_prune_before_done_warns_once_with_where_the_schedule_is():
    model, inputs = _tiny()
    pruner = tpp.TPPPruner(model, inputs, ratio=0.5)
    for _ in range(200):
        pruner.step()
    with pytest.warns(
        UserWarning,
        match=r"^tpp: prune\(\) before pruner\.done, at iteration 200 of 110,000: .*"
        r"lambda 0\.002 of ceiling 1, phase 'regularize'.*cost accuracy.*"
        r"loop until pruner\.done, or .*schedule='fast'",
    ) as caught:
        pruner.prune()
    assert len([w for w in caught if "pruner.done" in str(w.message)]) == 1 and "\n" not in str(caught[0].message)


def test_a_failed_early_prune_warns_only_the_first_time(monkeypatch):
    model, inputs = _tiny()
    pruner = tpp.TPPPruner(model, inputs, ratio=0.5)

    def fail(check_each):
        raise KeyboardInterrupt

    monkeypatch.setattr(pruner, "_remove", fail)
    with pytest.warns(UserWarning, match="iteration 0 of 110,000.*plain L1 pruning"), pytest.raises(KeyboardInterrupt):
        pruner.prune()
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pruner.prune()  # told already


def test_no_warning_once_done_nor_for_one_shot_methods():
    model, inputs = _tiny()
    pruner = tpp.TPPPruner(
        model, inputs, ratio=0.5, reg_step=0.5, reg_interval=1, stabilize_iters=2, zero_out_interval=0
    )
    while not pruner.done:
        pruner.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pruner.prune()
        tpp.pruning.L1Pruner(*_tiny(), ratio=0.5).prune()
        tpp.pruning.get_method("scratch").make_pruner(*_tiny(), ratio=0.5).prune()


def test_adaptive_schedule_warns_with_its_upper_bound():
    pruner = tpp.pruning.get_method("tpp-adaptive").make_pruner(*_tiny(), ratio=0.5)
    with pytest.warns(UserWarning, match=r"at iteration 0 of at most 110,000: .*phase 'regularize'"):
        pruner.prune()


def test_fast_preset_is_ten_times_shorter_and_paper_is_the_default():
    lengths = {
        preset: tpp.TPPPruner(*_tiny(), ratio=0.5, schedule=preset).total_iterations for preset in ("paper", "fast")
    }
    assert lengths == {"paper": 110_000, "fast": 11_000}
    assert tpp.TPPPruner(*_tiny(), ratio=0.5).total_iterations == 110_000
    fast = tpp.TPPPruner(*_tiny(), ratio=0.5, reg_step=0.01, stabilize_iters=50, zero_out_interval=1, schedule="fast")
    assert fast.config["reg_step"] == pytest.approx(0.1) and fast.config["stabilize_iters"] == 5
    assert fast.total_iterations == 10 * 10 + 5  # the preset scales the options given
    assert tpp.pruning.GReg1Pruner(*_tiny(), ratio=0.5, schedule="fast").total_iterations == 11_000
    assert tpp.pruning.OrthRegThenL1Pruner(*_tiny(), ratio=0.5, schedule="fast").total_iterations == 5_000
    adaptive = tpp.pruning.get_method("tpp-adaptive").pruner(*_tiny(), ratio=0.5, schedule="fast")
    assert adaptive.schedule.reg_step == pytest.approx(1e-3) and adaptive.total_iterations == 110_000


def test_fast_preset_runs_to_done_in_a_tenth_of_the_steps():
    options = dict(ratio=0.5, reg_step=0.01, reg_interval=1, stabilize_iters=100, zero_out_interval=1)
    paper, fast = tpp.TPPPruner(*_tiny(), **options), tpp.TPPPruner(*_tiny(), **options, schedule="fast")
    steps = {}
    for name, pruner in (("paper", paper), ("fast", fast)):
        while not pruner.done:
            pruner.step()
        steps[name] = pruner.iteration
    assert steps == {"paper": 200, "fast": 20}


def test_unknown_preset_is_a_one_line_config_error():
    from tpp.pruning.presets import fast_options

    for build in (
        lambda: tpp.TPPPruner(*_tiny(), ratio=0.5, schedule="quick"),
        lambda: tpp.pruning.GReg1Pruner(*_tiny(), ratio=0.5, schedule="Fast"),
    ):
        with pytest.raises(ConfigError, match=r"unknown schedule preset .*; choose from paper, fast") as info:
            build()
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown pruning method"):
        fast_options("nope", {})


def test_fast_options_match_what_recipes_did():
    from tpp.pruning.presets import fast_options
    from tpp.pruning.registry import get_method

    def recipes_before(method, options):  # recipes/grid.py's --fast before the preset moved to the core
        options, defaults = dict(options), {o.name: o.default for o in get_method(method).options}
        if "reg_step" in defaults:
            options["reg_step"] = options.get("reg_step", defaults["reg_step"]) * 10.0
        for name in ("stabilize_iters", "orth_iters"):
            if name in defaults:
                options[name] = int(options.get(name, defaults[name])) // 10
        return options

    for method in tpp.pruning.list_methods():
        for options in ({}, {"reg_step": 2e-4, "stabilize_iters": 5000, "orth_iters": 777, "gram_weight": 1.0}):
            options = {k: v for k, v in options.items() if k in {o.name for o in get_method(method).options}}
            assert fast_options(method, options) == recipes_before(method, options), method


def test_schedule_length_without_a_model():
    from tpp.pruning.presets import describe_schedule, fast_options, schedule_length

    assert schedule_length("tpp", {}) == 110_000 == 10_000 * 10 + 10_000  # ceil(1 / 1e-4) x 10 + stabilize_iters
    assert schedule_length("tpp", fast_options("tpp", {})) == 11_000
    assert schedule_length("greg1", {"reg_step": 0.3, "reg_interval": 2, "stabilize_iters": 4}) == 4 * 2 + 4
    assert schedule_length("kernorth+l1", {}) == 50_000 and schedule_length("tpp-adaptive", {}) == 110_000
    assert schedule_length("l1", {"ratio": 0.5}) is None and describe_schedule("l1", {}) == "none (one-shot)"
    assert describe_schedule("tpp", {}) == (
        "110,000 iterations (lambda +0.0001 every 10 up to 1: 100,000, then 10,000 at the ceiling)"
    )
    assert describe_schedule("tpp-adaptive", {}).startswith("at most 110,000 iterations")
    with pytest.raises(ConfigError, match="has no option 'stabilise_iters'"):
        schedule_length("tpp", {"stabilise_iters": 10})
    with pytest.raises(ConfigError, match="reg_step"):
        schedule_length("tpp", {"reg_step": 0})
