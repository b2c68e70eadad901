"""The adaptive schedule (beyond the paper): lambda grows faster while the pruned channels resist,
each unit is zeroed once it has converged, and the phase ends when all have stayed converged.

The schedule's logic is checked against a scripted progress signal; the method ``tpp-adaptive`` on the
embedded MNIST subset (real data) must end well before the official schedule's length, with pruned
channels that are gone, so that removal does not change the network's output.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import tpp
from tests.loop import pruner_step
from tpp.data.embedded import load_mnist_subset
from tpp.errors import ConfigError
from tpp.pruning.adaptive_schedule import AdaptiveSchedule


class Scripted:
    """A progress signal: each call returns the next entry (held at the last one)."""

    def __init__(self, values: list[dict[int, tuple[float, float]]]) -> None:
        self.values, self.calls = values, 0

    def __call__(self) -> dict[int, tuple[float, float]]:
        value = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return value


def _run(schedule: AdaptiveSchedule, iterations: int) -> None:
    for _ in range(iterations):
        if schedule.done:
            return
        schedule.step()


def test_lambda_grows_ever_faster_while_the_ratio_lags_the_pace_and_holds_at_the_pace():
    stuck = Scripted([{0: (0.5, 0.5)}])  # never shrinks: the increment doubles at every check
    schedule = AdaptiveSchedule(reg_step=1e-3, reg_interval=1, check_interval=10, halving_iters=10, max_iterations=1000)
    schedule.bind([0], stuck)
    _run(schedule, 40)
    assert schedule.increment == pytest.approx(16e-3) and schedule.value() == pytest.approx(0.15)  # 10+20+40+80 e-3
    # halving between checks is the pace (halving_iters = check_interval): lambda holds, the increment resets
    shrinking = Scripted([{0: (0.9, 0.9)}] + [{0: (0.8 * 0.5**k, 0.5)} for k in range(10)])
    schedule = AdaptiveSchedule(reg_step=1e-3, reg_interval=1, check_interval=10, halving_iters=10, max_iterations=1000)
    schedule.bind([0], shrinking)
    _run(schedule, 30)  # lambda 0.01 at the 1st check, +2e-3 x 10 to the 2nd, +4e-3 x 10 to the 3rd (at the pace)
    held = schedule.value()
    assert held == pytest.approx(0.07) and schedule.increment == 1e-3 and not schedule.growing
    _run(schedule, 20)
    assert schedule.value() == held
    # a slower pace (halving every 100 iterations) is met too: lambda holds
    schedule = AdaptiveSchedule(reg_step=1e-3, reg_interval=1, check_interval=10, halving_iters=100)
    schedule.bind([0], Scripted([{0: (0.9 * 0.9**k, 0.5)} for k in range(10)]))
    _run(schedule, 30)
    assert not schedule.growing and schedule.value() == pytest.approx(0.03)  # held from the 2nd check


def test_units_are_zeroed_once_below_target_and_the_phase_ends_patience_checks_later():
    # unit 0 is below target at the 2nd check, unit 3 at the 4th (its coupling must be small too)
    script = [
        {0: (0.5, 0.5), 3: (0.5, 0.5)},
        {0: (1e-4, 1e-4), 3: (0.5, 0.5)},
        {0: (1e-4, 1e-4), 3: (1e-4, 0.5)},
        {0: (1e-4, 1e-4), 3: (1e-4, 1e-4)},
    ]
    schedule = AdaptiveSchedule(check_interval=5, patience=3, max_iterations=10_000)
    schedule.bind([0, 3], Scripted(script))
    _run(schedule, 10)
    assert schedule.zero_due(0) and not schedule.zero_due(3) and schedule.phase == "regularize"
    _run(schedule, 10)
    assert schedule.zero_due(3) and not schedule.done
    _run(schedule, 100)
    # the last unit is done at iteration 20; the network adapts for patience (3) checks of 5 iterations
    summary = schedule.summary()
    assert schedule.done and schedule.stopped_at == 35 and summary["reason"] == "converged"
    assert summary["units_done_at"] == {0: 10, 3: 20} and summary["final_ratio"] == 1e-4


def test_at_the_ceiling_a_unit_whose_ratio_stops_shrinking_is_done():
    # lambda reaches the ceiling at iteration 10 (checks every 10): windows of 2 checks open at 10, 30, 50.
    # The ratio halves per check until 40, then shrinks by 1% per check: the window 50..70 does not halve it
    ratios = [0.9, 0.8, 0.4, 0.2, 0.1] + [0.1 * 0.99**k for k in range(1, 40)]
    schedule = AdaptiveSchedule(
        reg_step=0.1, reg_interval=1, check_interval=10, patience=2, halving_iters=10, max_iterations=10_000
    )
    schedule.bind([0], Scripted([{0: (r, r)} for r in ratios]))
    _run(schedule, 69)
    assert schedule.value() == 1.0 and not schedule.zero_due(0)
    _run(schedule, 1)
    assert schedule.zero_due(0) and schedule.summary()["units_done_at"] == {0: 70}
    _run(schedule, 100)
    assert schedule.stopped_at == 90 and schedule.summary()["reason"] == "converged"


def test_max_iterations_bounds_the_phase():
    schedule = AdaptiveSchedule(check_interval=1, patience=3, max_iterations=50, reg_ceiling=1e30)
    schedule.bind([0], Scripted([{0: (0.1, 0.1)}]))  # never done: below the (unreachable) ceiling
    _run(schedule, 1000)
    assert schedule.done and schedule.stopped_at == 50 and schedule.summary()["reason"] == "max_iterations"
    assert not schedule.zero_due(0)


def test_state_dict_resumes_mid_phase():
    script = [{0: (0.5 / (k + 1), 0.4), 2: (0.3, 0.3 / (k + 1))} for k in range(50)]
    reference = AdaptiveSchedule(reg_interval=1, check_interval=3, reg_step=0.05)
    reference.bind([0, 2], Scripted(script))
    _run(reference, 80)
    first = AdaptiveSchedule(reg_interval=1, check_interval=3, reg_step=0.05)
    first.bind([0, 2], Scripted(script))
    _run(first, 41)
    resumed = AdaptiveSchedule(reg_interval=1, check_interval=3, reg_step=0.05)
    signal = Scripted(script)
    signal.calls = first._progress.calls
    resumed.bind([0, 2], signal)
    resumed.load_state_dict(first.state_dict())
    _run(resumed, 39)
    assert resumed.state_dict() == reference.state_dict() and reference.converged


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="target must be > 0"):
        AdaptiveSchedule(target=0)
    with pytest.raises(ConfigError, match="min_progress"):
        AdaptiveSchedule(min_progress=1.0)
    with pytest.raises(ConfigError, match="needs a pruner that measures its progress"):
        AdaptiveSchedule().bind([0])
    with pytest.raises(ConfigError, match="check_interval must be a number >= 1"):
        tpp.pruning.get_method("tpp-adaptive").make_pruner(
            tpp.create_model("mlp7_linear"), torch.randn(2, 1, 32, 32), ratio=0.5, check_interval=0
        )


def test_tpp_adaptive_on_mnist_ends_early_with_the_pruned_channels_gone():
    images, labels = load_mnist_subset("train")
    images = (images.float() / 255 - 0.1307) / 0.3081
    torch.manual_seed(0)
    model = tpp.create_model("mlp7_linear", num_classes=10, in_channels=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for x, y in zip(images.split(64), labels.split(64)):  # one epoch of pretraining
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    pruner = tpp.pruning.get_method("tpp-adaptive").make_pruner(
        model, images[:2], ratio=0.5, check_interval=10, halving_iters=500
    )  # a faster pace than the default: a quicker test
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    while not pruner.done:
        for x, y in zip(images.split(64), labels.split(64)):
            pruner_step(pruner, optimizer, F.cross_entropy(model(x), y))
            if pruner.done:
                break
    summary = pruner.schedule.summary()
    assert summary["reason"] == "converged" and summary["stopped_at"] < 11_000, summary  # < 10% of 110,000
    ratios = [ratio for ratio, _ in pruner.progress().values()]
    assert max(ratios) <= 1e-3
    model.eval()
    with torch.no_grad():
        before = model(images[:256])
    pruned = pruner.prune(optimizer)
    with torch.no_grad():
        after = pruned(images[:256])
    assert pruned.fc1.out_features == 50
    assert (before.argmax(1) == after.argmax(1)).float().mean() >= 0.99


def test_tpp_prune_with_the_adaptive_method_reports_where_it_stopped(run_cli, tmp_path):
    from tpp.cli.main import main

    base = tmp_path / "base"
    assert (
        main(
            [
                "train",
                "--model",
                "mlp7_linear",
                "--dataset",
                "mnist_subset",
                "--epochs",
                "1",
                "--out",
                str(base),
                "--quiet",
            ]
        )
        == 0
    )
    out = tmp_path / "job"
    result = run_cli(
        "prune",
        "--method",
        "tpp-adaptive",
        "--model",
        "mlp7_linear",
        "--dataset",
        "mnist_subset",
        "--checkpoint",
        str(base / "best.pt"),
        "--ratio",
        "0.5",
        "--check-interval",
        "10",
        "--halving-iters",
        "500",
        "--ft-epochs",
        "1",
        "--out",
        str(out),
    )
    assert result.code == 0, result.err
    assert "regularising: at most 110,000 iterations" in result.out
    report = json.loads((out / "report.json").read_text())
    schedule = report["regularization"]["schedule"]
    assert schedule["reason"] == "converged" and schedule["stopped_at"] == report["regularization"]["iterations"]
    assert schedule["stopped_at"] < 11_000 and report["method_options"]["check_interval"] == 10
    assert report["counts_after"]["params"] == 64510
    # its options are refused for the fixed-schedule method
    refused = run_cli(
        "prune",
        "--method",
        "tpp",
        "--model",
        "mlp7_linear",
        "--dataset",
        "mnist_subset",
        "--checkpoint",
        str(base / "best.pt"),
        "--ratio",
        "0.5",
        "--check-interval",
        "10",
    )
    assert refused.code == 2 and "--check-interval is an option of tpp-adaptive" in refused.err
