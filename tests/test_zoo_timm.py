"""TPPPruner on third-party models: ``timm`` classifiers with random weights (``make test-timm``).

Not part of ``make test``: timm needs torchvision, which the CPU torch pin lacks, so these tests
run in their own venv (``.venv-timm``) and are skipped wherever timm is not installed.
"""

from __future__ import annotations

import pytest

from tests.zoo.contract import check_case, check_pass_rate
from tests.zoo.runner import SCOPES, run_suite
from tests.zoo.timm_models import IMPOSSIBLE, SPECS

pytest.importorskip("timm")

pytestmark = pytest.mark.timm


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Every case, run once for the module (one reload process for all of them)."""
    return {c.key: c for c in run_suite("timm", tmp_path_factory.mktemp("zoo"))}


def test_the_zoo_covers_the_required_families():
    required = (
        "resnet",
        "mobilenetv3",
        "efficientnet",
        "convnext",
        "regnet",
        "densenet",
        "ghostnet",
        "vit",
        "mixnet",
        "rexnet",
    )
    assert all(any(name.startswith(family) for name in SPECS) for family in required)


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("model", list(SPECS))
def test_case_meets_the_contract(zoo, model, scope):
    check_case(zoo[f"{model}/{scope}"])


def test_at_least_90_percent_of_cases_prune_exactly(zoo):
    check_pass_rate(list(zoo.values()), IMPOSSIBLE)
