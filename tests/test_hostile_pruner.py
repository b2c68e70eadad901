"""Hostile cases of the pruning core (issue 15, items 9 and 10): tied weights, an interrupted commit, and
foreign or damaged pruner states. Each is refused in one line that says what to do, or handled, and
leaves the user's model, optimizer and pruner as they were."""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
import torch.nn as nn

import tpp
from tpp.errors import CheckpointError, PruningError
from tpp.pruning import GReg1Pruner, L1Pruner, base, history
from tpp.pruning.methods.tpp_adaptive import tpp_adaptive
from tpp.pruning.state import PrunerStateError


class SharedConsumers(nn.Module):
    """``c`` and ``d`` share one weight and read the same channels: every cut of it is the same for both."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Linear(4, 8)
        self.c = nn.Linear(8, 6)
        self.d = nn.Linear(8, 6, bias=False)
        self.d.weight = self.c.weight
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.p(x))
        return self.head(torch.relu(self.c(h) + self.d(h)))


class TiedLM(nn.Module):
    """An embedding tied to the output head; ``fc2``'s unit would cut the head's columns but not the embedding's."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 8)
        self.head = nn.Linear(8, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc2(torch.relu(self.fc1(self.emb(ids)))))


class AliasedModule(nn.Module):
    """One module under two names: pruned once, nothing to tie."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 2)
        self.alias = self.fc1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.alias(x)))


def _state(model: nn.Module) -> dict[str, tuple[int, torch.Tensor]]:
    return {k: (id(v), v.detach().clone()) for k, v in model.state_dict(keep_vars=True).items()}


def _same_state(model: nn.Module, before: dict[str, tuple[int, torch.Tensor]]) -> bool:
    """The same tensor objects with the same values."""
    now = model.state_dict(keep_vars=True)
    return now.keys() == before.keys() and all(
        id(now[k]) == before[k][0] and now[k].shape == before[k][1].shape and torch.equal(now[k].detach(), before[k][1])
        for k in now
    )


def _optimizer_view(optimizer: torch.optim.Optimizer) -> tuple[list[list[int]], dict[int, dict[str, torch.Tensor]]]:
    groups = [[id(p) for p in g["params"]] for g in optimizer.param_groups]
    state = {
        id(p): {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()} for p, s in optimizer.state.items()
    }
    return groups, state


def _same_optimizer(optimizer: torch.optim.Optimizer, view) -> bool:
    groups, state = _optimizer_view(optimizer)
    return (
        groups == view[0]
        and state.keys() == view[1].keys()
        and all(
            torch.equal(state[p][k], view[1][p][k]) if torch.is_tensor(view[1][p][k]) else state[p][k] == view[1][p][k]
            for p in state
            for k in view[1][p]
        )
    )


def _each_parameter_once(model: nn.Module, optimizer: torch.optim.Optimizer) -> bool:
    held = [id(p) for g in optimizer.param_groups for p in g["params"]]
    return len(held) == len(set(held)) and set(held) == {id(p) for p in model.parameters()}


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor) -> None:
    optimizer.zero_grad()
    model(inputs).square().mean().backward()
    optimizer.step()


# ---------------------------------------------------------------------------------------- tied weights
@pytest.mark.parametrize("scope", ["internal", "all"])
def test_a_tie_cut_alike_stays_one_trained_parameter(scope):
    torch.manual_seed(0)
    model, x = SharedConsumers(), torch.randn(4, 4)
    pruner = L1Pruner(model, x, ratio=0.5, scope=scope)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _step(model, optimizer, x)
    pruner.zero_pruned()
    model.eval()
    with torch.no_grad():
        expected = model(x)
    pruner.prune(optimizer)
    assert model.c.weight is model.d.weight and model.c.in_features == model.d.in_features == 4
    assert _each_parameter_once(model, optimizer)
    with torch.no_grad():
        assert torch.allclose(model(x), expected, atol=1e-6)
    before = model.d.weight.detach().clone()
    _step(model, optimizer, x)
    assert model.c.weight is model.d.weight and not torch.equal(model.d.weight, before)


def test_a_kept_tie_survives_save_and_load(tmp_path):
    torch.manual_seed(0)
    model, x = SharedConsumers(), torch.randn(4, 4)
    pruned = L1Pruner(model, x, ratio=0.5, scope="all").prune()
    path = tpp.save_pruned(pruned, tmp_path / "tied.pt")
    loaded = tpp.load_pruned(path, SharedConsumers())
    assert loaded.c.weight is loaded.d.weight and loaded.c.weight.shape == pruned.c.weight.shape
    pruned.eval(), loaded.eval()
    assert torch.allclose(loaded(x), pruned(x))


def test_a_tie_the_plan_would_break_is_refused_at_construction():
    torch.manual_seed(0)
    model, ids = TiedLM(), torch.randint(0, 10, (2, 5))
    before = _state(model)
    with pytest.raises(
        PruningError,
        match=r"emb\.weight and head\.weight share one tensor \(tied weights\).*"
        r"pass 'fc2' in ignored_layers, or untie them",
    ) as info:
        tpp.TPPPruner(model, ids, ratio=0.5)
    assert "\n" not in str(info.value) and _same_state(model, before)

    pruner = tpp.TPPPruner(model, ids, ratio=0.5, ignored_layers=["fc2"])  # what the message says works
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner.prune(optimizer)
    assert model.head.weight is model.emb.weight and model.fc1.out_features == 8
    assert _each_parameter_once(model, optimizer)


def test_two_names_of_one_module_are_not_a_tie():
    torch.manual_seed(0)
    model, x = AliasedModule(), torch.randn(2, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    L1Pruner(model, x, ratio=0.5).prune(optimizer)
    assert model.alias is model.fc1 and model.fc1.out_features == 4 and _each_parameter_once(model, optimizer)


# ---------------------------------------------------------------------------------------- one commit
def _trained_resnetlike():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )
    x = torch.randn(2, 3, 8, 8)
    pruner = tpp.TPPPruner(model, x, ratio=0.5, reg_step=0.5, reg_interval=1, stabilize_iters=3, zero_out_interval=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _step(model, optimizer, x)
    pruner.step()
    return model, x, pruner, optimizer


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
@pytest.mark.parametrize("when", ["after", "during"])
def test_an_interrupt_at_the_optimizer_repoint_puts_model_and_optimizer_back(monkeypatch, error, when):
    model, x, pruner, optimizer = _trained_resnetlike()
    before, view, phase = _state(model), _optimizer_view(optimizer), pruner.phase
    original = base.repoint_optimizer

    def interrupted(opt, module, names):
        if when == "during":  # half of the groups' parameters re-pointed, state partly dropped
            opt.state.pop(opt.param_groups[0]["params"][0], None)
            opt.param_groups[0]["params"] = opt.param_groups[0]["params"][:1]
        else:
            original(opt, module, names)
        raise error("interrupted")

    monkeypatch.setattr(base, "repoint_optimizer", interrupted)
    with pytest.raises(error):
        pruner.prune(optimizer)
    assert _same_state(model, before) and _same_optimizer(optimizer, view)
    assert pruner.phase == phase and not hasattr(model, "tpp_plan") and model[0].out_channels == 8
    monkeypatch.setattr(base, "repoint_optimizer", original)
    pruner.prune(optimizer)  # and it still works
    assert model[0].out_channels == 4 and _each_parameter_once(model, optimizer)


def test_an_interrupt_while_recording_the_plan_keeps_the_earlier_plan(monkeypatch):
    model, x, pruner, optimizer = _trained_resnetlike()
    model.tpp_plan = {"history": [["earlier", True, [0]]], "inputs": None}
    original = history.record_plan

    def interrupted(*args):
        original(*args)  # appends to the plan, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(base, "record_plan", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pruner.prune(optimizer)
    assert model.tpp_plan["history"] == [["earlier", True, [0]]] and model[0].out_channels == 8


# ---------------------------------------------------------------------------------------- pruner states
def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))


SCHEDULE = dict(reg_step=0.25, reg_interval=1, stabilize_iters=4, zero_out_interval=1)


def _tpp(ratio=0.5, **options) -> tpp.TPPPruner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tpp.TPPPruner(_mlp(), torch.randn(2, 8), ratio=ratio, **{**SCHEDULE, **options})


def _saved(pruner, steps: int = 3) -> dict:
    for _ in range(steps):
        pruner.step()
    return copy.deepcopy(pruner.state_dict())


def _refused(pruner, state, *words: str) -> str:
    before = copy.deepcopy(pruner.state_dict())
    with pytest.raises(PrunerStateError) as info:
        pruner.load_state_dict(state)
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message
    assert pruner.state_dict() == before  # nothing of the pruner changed
    return message


def test_a_state_from_an_identical_pruner_loads_and_resumes_exactly():
    first = _tpp()
    saved = _saved(first, 4)
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    buffer.seek(0)
    other = _tpp()
    other.load_state_dict(torch.load(buffer, weights_only=True))
    assert other.state_dict() == saved and (other.iteration, other.phase) == (4, "stabilize") == (4, first.phase)
    for _ in range(2):
        first.step(), other.step()
    assert other.state_dict() == first.state_dict()


def test_a_state_saved_with_another_ratio_is_refused():
    saved = _saved(_tpp(ratio=0.25))
    message = _refused(
        _tpp(ratio=0.75),
        saved,
        "built with ratio=0.75",
        "state is from ratio=0.25",
        "rebuild the pruner with the method and options of the saved run",
    )
    assert isinstance(PrunerStateError(message), CheckpointError)  # caught as either kind


@pytest.mark.parametrize(
    "option, value", [("scope", "all"), ("reg_step", 0.5), ("gram_weight", 10.0), ("global_ratio", 0.5)]
)
def test_a_state_saved_with_other_options_is_refused(option, value):
    kwargs = {option: value, **({"ratio": None} if option == "global_ratio" else {})}
    key = "ratio" if option == "global_ratio" else option  # the first option that differs
    _refused(_tpp(), _saved(_tpp(**kwargs), 1), f"built with {key}=", "rebuild the pruner")


def test_a_state_from_another_method_or_schedule_is_refused():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        greg = GReg1Pruner(_mlp(), torch.randn(2, 8), ratio=0.5, reg_step=0.25, reg_interval=1, stabilize_iters=4)
        adaptive = tpp_adaptive(_mlp(), torch.randn(2, 8), ratio=0.5, reg_step=0.25, reg_interval=1)
    _refused(_tpp(), _saved(greg), "another method")
    _refused(_tpp(), adaptive.state_dict(), "does not write", "another method or schedule")
    _refused(adaptive, _saved(_tpp()), "does not write")


def _with_indices(state: dict, unit: str, indices) -> dict:
    state = copy.deepcopy(state)
    state["pruned_indices"][unit] = indices
    return state


@pytest.mark.parametrize(
    "indices, words",
    [
        ([0, 1, 2, 3, 4, 5, 6, 999], ["channel 999", "channels 0..15"]),
        ([-1, 1, 2, 3, 4, 5, 6, 7], ["channel -1"]),
        ([1, 1, 2, 3, 4, 5, 6, 7], ["channel 1", "twice"]),
        ([1.5, 1, 2, 3, 4, 5, 6, 7], ["1.5", "not a whole number"]),
        ([True, 1, 2, 3, 4, 5, 6, 7], ["True", "not a whole number"]),
        (["3", 1, 2, 4, 5, 6, 7, 8], ["'3'", "not a whole number"]),
        ([1, 2, 3], ["prunes 3 channels of unit '0'", "asks for 8"]),
        (list(range(12)), ["prunes 12 channels of unit '0'", "asks for 8"]),
        (list(range(16)), ["prunes 16 channels of unit '0'", "at least 1 goes and 1 stays"]),
        ([], ["prunes 0 channels"]),
        ("0,1,2", ["must be a list"]),
        (torch.arange(8.0), ["must be a list"]),
    ],
)
def test_damaged_pruned_indices_are_refused(indices, words):
    pruner = _tpp()
    _refused(pruner, _with_indices(_saved(_tpp()), "0", indices), *words)


def test_units_the_pruner_does_not_prune_are_refused():
    saved = _saved(_tpp())
    _refused(_tpp(), _with_indices(saved, "4", [0]), "cannot prune", "another model or scope")
    lacking = copy.deepcopy(saved)
    del lacking["pruned_indices"]["2"]
    _refused(_tpp(), lacking, "lacks units ['2']")
    _refused(_tpp(), {**saved, "pruned_indices": []}, "must be a dict")


@pytest.mark.parametrize(
    "change, words",
    [
        ({"iteration": -1}, ["iteration must be a whole number >= 0"]),
        ({"iteration": 2.5}, ["iteration must be a whole number"]),
        ({"iteration": "3"}, ["iteration must be a whole number"]),
        ({"iteration": 10**30}, ["past the end of this pruner's schedule (8 iterations)"]),
        ({"stabilize_start": 99}, ["stabilize_start 99"]),
        ({"stabilize_start": "x"}, ["stabilize_start 'x'"]),
        ({"version": 2}, ["version 2"]),
        ({"pruned": "no"}, ["'pruned' must be true or false"]),
        ({"config": [1, 2]}, ["config must be a dict"]),
        ({"lambda": 0.5}, ["keys ['lambda']", "does not write"]),
        ({"config": {"ratio": 0.5}}, ["another method", "lacks options"]),
        ({"config": {"ratio": "*:x"}}, ["another method"]),
    ],
)
def test_damaged_state_entries_are_refused(change, words):
    _refused(_tpp(), {**_saved(_tpp()), **change}, *words)


def test_missing_entries_and_non_dicts_are_refused():
    saved = _saved(_tpp())
    _refused(_tpp(), {k: v for k, v in saved.items() if k != "iteration"}, "lacks ['iteration']")
    _refused(_tpp(), {k: v for k, v in saved.items() if k != "pruned_indices"}, "lacks ['pruned_indices']")
    for garbage in (None, [1, 2], "state", 3, {1: 2}):
        _refused(_tpp(), garbage, "Pruner.state_dict()")


def test_a_state_from_after_prune_is_refused():
    pruner = _tpp(stabilize_iters=0)
    while not pruner.done:
        pruner.step()
    pruner.prune()
    with pytest.raises(PruningError, match="after prune"):
        _tpp().load_state_dict(pruner.state_dict())


def test_a_malformed_adaptive_schedule_state_is_refused():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make = lambda: tpp_adaptive(_mlp(), torch.randn(2, 8), ratio=0.5, reg_step=0.25, reg_interval=1)  # noqa: E731
    saved = _saved(make())
    make().load_state_dict(saved)  # the valid one loads
    for change, word in [
        ({"strength": "x"}, "strength"),
        ({"strength": 5.0}, "strength"),
        ({"converged": {"a": 1}}, "unit 'a'"),
        ({"converged": [1]}, "converged must be a dict"),
        ({"window": {0: (1,)}}, "(iteration, ratio) pair"),
        ({"growing": "yes"}, "flag"),
        ({"stopped_at": 10**9}, "stopped_at"),
    ]:
        _refused(make(), {**saved, **change}, word)


def test_global_ratio_states_load_and_too_many_channels_are_refused():
    pruner = _tpp(ratio=None, global_ratio=0.25)
    saved = _saved(pruner)
    _tpp(ratio=None, global_ratio=0.25).load_state_dict(saved)
    _refused(
        _tpp(ratio=None, global_ratio=0.25), _with_indices(saved, "0", list(range(12))), "allows 8", "another ratio"
    )
