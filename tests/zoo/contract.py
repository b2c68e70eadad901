"""The contract every zoo case must meet, as assertions shared by the transformers and timm tests.

Each (model, scope) ends pruned exactly (eval output of the pruned model equal to the zeroed
model's within 1e-5 relative, reloaded in a fresh process bit for bit; a language model also exported
with ``tpp.save_pretrained`` and loaded by ``from_pretrained`` without tpp, with the same logits) or
refused with a one-line TPPError when the pruner is built. Never a hang, a raw error, a refusal only at ``prune()`` or a
silently different model (a refused ``prune()`` must still leave the model and the optimizer exactly
as they were). At least 90% of the cases prune exactly, not counting the architectures where exact
channel removal is impossible by construction: those must be refused, and each says why.
"""

from __future__ import annotations

from collections.abc import Mapping

from tests.zoo.runner import CaseResult

MIN_EXACT_FRACTION = 0.9


def describe(case: CaseResult) -> str:
    """One line naming the case, its outcome and why."""
    from tests.zoo.table import reason_of

    return f"{case.key} ({case.inputs} inputs): {case.result}, reload {case.reload or '-'}: {reason_of(case)}"


def check_case(case: CaseResult) -> None:
    """Assert that one case meets the contract."""
    if case.result.startswith("refused"):
        assert case.reason and "\n" not in case.reason, f"refusal is not one line: {case.reason!r}"
        assert not case.changed, f"a refused call left the model or optimizer changed: {describe(case)}"
    assert case.result in ("exact", "refused at build"), describe(case)
    if case.result == "exact":
        assert not case.optimizer_note, describe(case)
        assert case.reload == "identical", describe(case)
        if case.suite == "lm":  # exported equal, or refused in one line (which families: tests/test_zoo_lm.py)
            refused = case.export.startswith("refused: ") and "\n" not in case.export
            assert case.export == "equal" or refused, f"{describe(case)}; export: {case.export}"


def check_pass_rate(cases: list[CaseResult], impossible: Mapping[str, str]) -> None:
    """Assert that at least :data:`MIN_EXACT_FRACTION` of ``cases`` prune exactly and reload identically.

    ``impossible`` maps a model name (both scopes) or a ``model/scope`` key to why no channel of it can
    be removed exactly: those cases must be refused when the pruner is built, and are not counted."""

    def excused(case: CaseResult) -> bool:
        return case.key in impossible or case.key.split("/")[0] in impossible

    for case in filter(excused, cases):
        assert case.result == "refused at build", f"expected a refusal: {describe(case)}"
    cases = [c for c in cases if not excused(c)]
    exact = [c for c in cases if c.meets_contract_exactly]
    others = "\n".join(describe(c) for c in cases if not c.meets_contract_exactly)
    assert len(exact) >= MIN_EXACT_FRACTION * len(cases), (
        f"{len(exact)}/{len(cases)} cases pruned exactly, below {MIN_EXACT_FRACTION:.0%}; the others:\n{others}"
    )
