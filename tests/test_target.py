"""Target-speedup search: bisection on the ratio, counting FLOPs only."""

from __future__ import annotations

import pytest

from tpp.errors import ConfigError
from tpp.models import create_model, example_inputs
from tpp.pruning.target import find_ratio_for_flops, find_ratio_for_speedup


@pytest.fixture(scope="module")
def resnet56():
    return create_model("resnet56", num_classes=10), example_inputs("resnet56", batch_size=1)


def test_resnet56_two_x_within_two_percent(resnet56) -> None:
    model, inputs = resnet56
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ratio, speedup = find_ratio_for_speedup(model, inputs, 2.0, pattern="*layer*.conv1:{ratio}")
    assert abs(speedup / 2.0 - 1) <= 0.02
    assert 0.4 < ratio < 0.6  # Table 1: ratio 0.5 gives 1.99x
    assert all((model.state_dict()[k] == v).all() for k, v in before.items())  # the model is untouched


def test_flops_budget_variant(resnet56) -> None:
    import tpp

    model, inputs = resnet56
    base = tpp.count(model, inputs).flops
    ratio, flops = find_ratio_for_flops(model, inputs, base / 3.0, tolerance=0.02)
    assert abs(base / flops / 3.0 - 1) <= 0.02 and 0 < ratio < 1


def test_unreachable_target_is_one_line(resnet56) -> None:
    model, inputs = resnet56
    with pytest.raises(ConfigError, match=r"unreachable .* at most \d+\.\d+x") as info:
        find_ratio_for_speedup(model, inputs, 500.0, pattern="*layer*.conv1:{ratio}")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="placeholder"):
        find_ratio_for_speedup(model, inputs, 2.0, pattern="*layer*.conv1:0.5")
    with pytest.raises(ConfigError, match="below 1x"):
        find_ratio_for_speedup(model, inputs, 0.5)
