"""The zoo harness itself: it passes a model the core prunes exactly and catches every failure mode.

The zoo tests (test_zoo_transformers.py, test_zoo_timm.py) are only as good as the harness, so
each failure the contract forbids is produced here on purpose and must be reported as such.
"""

from __future__ import annotations

import time

import pytest
import torch

import tpp
from tests.zoo.contract import check_case, check_pass_rate
from tests.zoo.runner import CaseResult, reload_all, run_case, run_suite
from tests.zoo.selftest_models import SPECS
from tests.zoo.snapshot import differences, snapshot
from tpp.errors import PruningError

SPEC = SPECS["residual"]


def test_a_model_the_core_handles_prunes_exactly_and_reloads_identically(tmp_path):
    cases = run_suite("selftest", tmp_path)
    assert [c.scope for c in cases] == ["internal", "all"]
    for case in cases:
        check_case(case)
        assert case.meets_contract_exactly, case
        assert case.params[1] < case.params[0] and case.flops[1] < case.flops[0]
    check_pass_rate(cases, {})


def test_the_reload_process_sees_a_one_ulp_difference(tmp_path):
    case = run_case("selftest", SPEC, "all", tmp_path)
    saved = torch.load(case.io_file, weights_only=True)
    saved["logits"][0, 0] = torch.nextafter(saved["logits"][0, 0], torch.tensor(float("inf")))
    torch.save(saved, case.io_file)
    reload_all([case], tmp_path)
    assert case.reload.startswith("outputs differ after reload"), case.reload
    with pytest.raises(AssertionError):
        check_case(case)


def _patch_prune(monkeypatch, replacement):
    monkeypatch.setattr(tpp.TPPPruner, "prune", replacement)


def test_a_refusal_that_comes_only_at_prune_breaks_the_contract(tmp_path, monkeypatch):
    def refuse(self, optimizer=None):
        raise PruningError("this structure cannot be pruned exactly; use scope='internal'")

    _patch_prune(monkeypatch, refuse)
    case = run_case("selftest", SPEC, "all", tmp_path)
    assert (case.result, case.changed) == ("refused at prune", [])
    with pytest.raises(AssertionError, match="refused at prune"):
        check_case(case)  # refusals belong to the pruner's construction, before any training
    with pytest.raises(AssertionError, match="0/1 cases pruned exactly"):
        check_pass_rate([case], {})
    with pytest.raises(AssertionError, match="expected a refusal"):
        check_pass_rate([case], {"residual": "structurally impossible"})  # excused only if refused at build


def test_a_refused_prune_that_changed_the_model_breaks_the_contract(tmp_path, monkeypatch):
    def half_done(self, optimizer=None):
        with torch.no_grad():
            self.module.conv1[0].weight[0] += 1  # as if one unit had been removed before the error
        raise PruningError("removing channels of conv1 would empty a layer")

    _patch_prune(monkeypatch, half_done)
    case = run_case("selftest", SPEC, "internal", tmp_path)
    assert case.result == "refused at prune"
    assert "state_dict conv1.0.weight changed" in case.changed
    with pytest.raises(AssertionError, match="left the model or optimizer changed"):
        check_case(case)


def test_raw_errors_hangs_and_wrong_functions_are_reported(tmp_path, monkeypatch):
    original = tpp.TPPPruner.prune

    def raw(self, optimizer=None):
        raise ValueError("index 9 is out of bounds")

    def hang(self, optimizer=None):
        time.sleep(30)

    def wrong(self, optimizer=None):
        model = original(self, optimizer)
        with torch.no_grad():
            model.head.bias += 1e-3
        return model

    for replacement, result in ((raw, "RAW"), (hang, "HANG"), (wrong, "inexact")):
        _patch_prune(monkeypatch, replacement)
        case = run_case("selftest", SPEC, "internal", tmp_path, stage_seconds=2)
        assert case.result == result, case
        with pytest.raises(AssertionError):
            check_case(case)
    assert case.error > 1e-5


def test_a_refusal_must_be_one_line():
    case = CaseResult("selftest", "residual", "all", "tensor", result="refused at build", reason="bad\nTraceback")
    with pytest.raises(AssertionError, match="not one line"):
        check_case(case)


def test_snapshots_see_layer_attributes_parameter_objects_and_optimizer_state():
    torch.manual_seed(0)
    model = SPEC.build()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(SPEC.inputs()).sum().backward()
    optimizer.step()
    before = snapshot(model, optimizer)
    assert differences(before, snapshot(model, optimizer)) == []

    model.conv1[0].out_channels = 4  # a width attribute, as a half-finished removal leaves it
    model.head.weight = torch.nn.Parameter(model.head.weight.detach().clone())  # same values, new object
    next(iter(optimizer.state.values()))["momentum_buffer"].mul_(2)
    found = differences(before, snapshot(model, optimizer))
    assert "module conv1.0 changed" in found
    assert "parameter head.weight changed" in found
    assert any(item.startswith("optimizer state") for item in found)
