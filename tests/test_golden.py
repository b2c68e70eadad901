"""Behaviour is preserved on any machine: every method's golden trajectory (tests/golden.py).

What is compared is what does not depend on the CPU that runs the test: the selected channels,
every phase and lambda (the schedule's own arithmetic), the linear MLP's whole loss trajectory to a
tolerance, and resnet20's first steps. Bit-for-bit comparison depends on the CPU model, instruction
set and torch build, so it is a developer tool on one machine (``make golden-record`` /
``make golden-check``), not a test.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests import golden

GOLDEN = json.loads(golden.GOLDEN_FILE.read_text())
# Training resnet20 is chaotic: a 1e-7 rounding difference between instruction sets grows past 1e-4
# within 5 to 15 steps (measured, AVX2 against AVX512), so only its first steps are comparable and
# its fine-tuning is cut to that many steps here (the recording keeps the full run).
RESNET_STEPS = 4
# The linear MLP stays close throughout. Measured against the AVX512 recording with torch's kernels
# forced to AVX2 and to the plain C++ ones (ATEN_CPU_CAPABILITY=avx2 / default): at most 7e-7
# relative, but 9e-5 for l1+orthp over its 300 fine-tuning steps, hence 1e-3.
MLP_TOLERANCE = 1e-3


def _close(a: list[str], b: list[str]) -> bool:
    return len(a) == len(b) and all(
        math.isclose(float.fromhex(x), float.fromhex(y), rel_tol=MLP_TOLERANCE, abs_tol=1e-6) for x, y in zip(a, b)
    )


@pytest.mark.parametrize("case", sorted(GOLDEN["cases"]))
def test_golden_trajectory(case):
    method, model = case.split("/")
    want = GOLDEN["cases"][case]
    chaotic = model == "resnet20"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        got = golden.run_case(method, model, finetune_steps=RESNET_STEPS if chaotic else None)
    finally:
        torch.set_num_threads(threads)
    if chaotic and method.endswith("+l1"):
        # selected after training a chaotic net: the same count per layer, maybe other filters
        assert {k: len(v) for k, v in got["pruned_indices"].items()} == {
            k: len(v) for k, v in want["pruned_indices"].items()
        }
    else:
        assert got["pruned_indices"] == want["pruned_indices"]
    assert got["phase"] == want["phase"] and got["lambda"] == want["lambda"]
    assert len(got["reg_loss"]) == len(want["reg_loss"])
    assert set(got["final"]) == set(want["final"])  # the same tensors survive removal
    if chaotic:
        trajectory = (got["reg_loss"] + got["ft_loss"])[:RESNET_STEPS]
        recorded = (want["reg_loss"] + want["ft_loss"])[:RESNET_STEPS]
        assert _close(trajectory, recorded), f"{case}: the first {RESNET_STEPS} losses moved"
    else:
        assert _close(got["reg_loss"], want["reg_loss"]), f"{case}: the regularisation losses moved"
        assert _close(got["ft_loss"], want["ft_loss"]), f"{case}: the fine-tuning losses moved"


def test_golden_cases_cover_every_phase():
    tpp_case = GOLDEN["cases"]["tpp/resnet20"]
    assert {"regularize", "stabilize", "done"} <= set(tpp_case["phase"])
    assert len(GOLDEN["cases"]) == len(golden.METHODS) * len(golden.MODELS)
