"""TPPPruner on third-party models: tiny ``transformers`` vision classifiers with random weights.

Every model is run in both scopes (tests.zoo.runner) and must meet the zoo contract
(tests.zoo.contract). ``python -m tests.zoo.table`` prints the same cases as a table.
"""

from __future__ import annotations

import pytest
import transformers  # a dev dependency: missing, the module fails instead of skipping

from tests.zoo.contract import check_case, check_pass_rate
from tests.zoo.hf_models import IMPOSSIBLE, SPECS
from tests.zoo.runner import SCOPES, run_suite


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Every case, run once for the module (one reload process for all of them)."""
    return {c.key: c for c in run_suite("transformers", tmp_path_factory.mktemp("zoo"))}


def test_the_zoo_covers_the_required_architectures():
    assert transformers.__version__
    required = {
        "resnet",
        "convnext",
        "convnextv2",
        "mobilenet_v1",
        "mobilenet_v2",
        "regnet",
        "efficientnet",
        "swin",
        "vit",
        "deit",
        "poolformer",
        "levit",
        "mobilevit",
        "bit",
    }
    assert required <= set(SPECS)
    assert sum(spec.dict_inputs for spec in SPECS.values()) >= 3  # the {"pixel_values": x} form too


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("model", list(SPECS))
def test_case_meets_the_contract(zoo, model, scope):
    check_case(zoo[f"{model}/{scope}"])


def test_at_least_90_percent_of_cases_prune_exactly(zoo):
    check_pass_rate(list(zoo.values()), IMPOSSIBLE)
