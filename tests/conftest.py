"""Shared fixtures: the real-data folder and an in-process ``tpp`` runner."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Tests use tiny models on a small shared machine: with several intra-op threads, OpenMP
# oversubscription under load made them 5-10x slower. Results do not depend on the count.
torch.set_num_threads(int(os.environ.get("TPP_TEST_THREADS", "1")))


# `make test` (and so CI) sets TPP_STRICT_TESTS=1: a test that skips is then a failure, unless it
# skips for one of these reasons, none of which is one of tpp's own checks or a dev dependency.
STRICT = os.environ.get("TPP_STRICT_TESTS") == "1"
ALLOWED_SKIPS = (
    "real MNIST not found",  # a fresh clone without ../shared beside it
    "shared MNIST files absent",
    "could not import 'timm'",  # timm runs in its own venv (make test-timm)
    "gloo",  # torch.distributed built without its CPU backend
    "GradScaler is missing",  # an older torch
)


def _unexpected_skip(longrepr: object) -> str | None:
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return None if any(allowed in reason for allowed in ALLOWED_SKIPS) else reason


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = _unexpected_skip(report.longrepr)
        if reason is not None:
            report.outcome = "failed"
            report.longrepr = f"skipped under make test, where nothing of tpp's may skip: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped:
        reason = _unexpected_skip(report.longrepr)
        if reason is not None:
            report.outcome = "failed"
            report.longrepr = f"module skipped under make test, where nothing of tpp's may skip: {reason}"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (real MNIST); the test is skipped where it is absent."""
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST not found under {SHARED_DATA}")
    return SHARED_DATA


@dataclass
class CliResult:
    """Exit code and captured output of one ``tpp`` invocation."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Call ``tpp.cli.main.main([...])`` in-process and capture stdout/stderr."""
    from tpp.cli.main import main

    def run(*args: object) -> CliResult:
        capsys.readouterr()  # drop anything printed before
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def digit_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image folder of real MNIST digits (the embedded subset) as 28x28 PNGs:
    ``train/digit_K`` 100 and ``val/digit_K`` 30 per class; file names are subset indices."""
    from tests.user_model_zoo import write_png_folder
    from tpp.data.embedded import _read_npz

    root = tmp_path_factory.mktemp("digits")
    arrays = _read_npz()
    write_png_folder(root, arrays["x_train"], arrays["y_train"], "train", 100)
    write_png_folder(root, arrays["x_test"], arrays["y_test"], "val", 30)
    return root


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An mlp7_linear trained 2 epochs on the embedded MNIST subset (its best.pt), once per test module."""
    from tpp.cli.main import main

    out = tmp_path_factory.mktemp("base") / "run"
    assert (
        main(
            [
                "train",
                "--model",
                "mlp7_linear",
                "--dataset",
                "mnist_subset",
                "--epochs",
                "2",
                "--lr",
                "0.01",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    return out / "best.pt"
