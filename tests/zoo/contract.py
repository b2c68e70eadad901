"""The contract every zoo case must meet, as assertions shared by the transformers and timm tests.

Each (model, scope) ends pruned exactly (eval output of the pruned model equal to the zeroed
model's within 1e-5 relative, reloaded in a fresh process bit for bit) or refused with a one-line
TPPError. Never a hang, a raw error or a silently different model; a refused ``prune()`` leaves the
model and the optimizer exactly as they were; at least 90% of the cases prune exactly.
"""

from __future__ import annotations

from tests.zoo.runner import CaseResult

MIN_EXACT_FRACTION = 0.9


def describe(case: CaseResult) -> str:
    """One line naming the case, its outcome and why."""
    from tests.zoo.table import reason_of

    return f"{case.key} ({case.inputs} inputs): {case.result}, reload {case.reload or '-'}: {reason_of(case)}"


def check_case(case: CaseResult) -> None:
    """Assert that one case meets the contract."""
    assert case.result not in ("RAW", "HANG", "inexact"), describe(case)
    if case.result.startswith("refused"):
        assert case.reason and "\n" not in case.reason, f"refusal is not one line: {case.reason!r}"
        assert not case.changed, f"a refused call left the model or optimizer changed: {describe(case)}"
    if case.result == "exact":
        assert not case.optimizer_note, describe(case)
        assert case.reload == "identical", describe(case)


def check_pass_rate(cases: list[CaseResult]) -> None:
    """Assert that at least :data:`MIN_EXACT_FRACTION` of ``cases`` prune exactly and reload identically."""
    exact = [c for c in cases if c.meets_contract_exactly]
    others = "\n".join(describe(c) for c in cases if not c.meets_contract_exactly)
    assert len(exact) >= MIN_EXACT_FRACTION * len(cases), (
        f"{len(exact)}/{len(cases)} cases pruned exactly, below {MIN_EXACT_FRACTION:.0%}; the others:\n{others}")
