"""The zoo's suites: name -> model specs, imported lazily (the libraries are optional)."""

from __future__ import annotations

import importlib
import importlib.util

from tests.zoo.spec import ModelSpec

# suite -> (module with SPECS, library it needs or None)
SUITES = {
    "transformers": ("tests.zoo.hf_models", "transformers"),
    "timm": ("tests.zoo.timm_models", "timm"),
    "lm": ("tests.zoo.lm_models", "transformers"),
    "selftest": ("tests.zoo.selftest_models", None),
}
# Bound on each stage of a case (build, training, prune, count), past which it is a HANG. Every
# stage of the tiny transformers models takes under a second on one core here, so 20 s is ample
# headroom and keeps `make test` short while the core still has hangs; timm's models are larger.
STAGE_SECONDS = {"transformers": 20, "timm": 60, "selftest": 20, "lm": 20}


def available(suite: str) -> bool:
    """Whether the suite's library is installed."""
    library = SUITES[suite][1]
    return library is None or importlib.util.find_spec(library) is not None


def specs(suite: str) -> dict[str, ModelSpec]:
    """The suite's models by name."""
    return importlib.import_module(SUITES[suite][0]).SPECS
