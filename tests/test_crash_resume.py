"""Kill a real run at every file-write point, resume it, and get the files of an uninterrupted run.

Each run is a forked child of the test process (torch is imported once) that SIGKILLs itself at
write point K (``TPP_KILL_AT_WRITE``, see :mod:`tpp.training.atomic`): point 2n-1 is "the n-th
file is complete in its temporary file but not renamed", point 2n "renamed, nothing after it
done". The child after it runs the same command with ``--resume``; the folder must then hold the
same files as the uninterrupted run's, with the same tensors, metrics records and report (up to
wall times and the ``--resume`` flag itself), and no temporary file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from tpp.util.atomic import KILL_AT_WRITE_ENV

# values that differ between any two runs, interrupted or not
VOLATILE = {"time", "wall_seconds", "resume", "start_time"}
SKIP_FILES = {"meta.json"}  # argv, host and start time of each process (a resume is appended there)


def _child(argv: list[str], kill_at: int | None) -> int | str:
    """Run ``tpp ARGV`` in a forked process; its exit code, or "killed"."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            if kill_at is None:
                os.environ.pop(KILL_AT_WRITE_ENV, None)
            else:
                os.environ[KILL_AT_WRITE_ENV] = str(kill_at)
            from tpp.cli.main import main

            code = main(argv)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return "killed"
    return os.WEXITSTATUS(status)


def _same(a: Any, b: Any, where: str) -> None:
    if torch.is_tensor(a) or torch.is_tensor(b):
        assert torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict) and isinstance(b, dict):
        keys = (set(a) | set(b)) - VOLATILE
        for key in sorted(keys, key=str):
            assert key in a and key in b, f"{where}: {key!r} only in one of them"
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _compare(run: Path, reference: Path, label: str) -> None:
    assert _files(run) == _files(reference), label
    for name in sorted(_files(reference) - SKIP_FILES):
        where = f"{label}: {name}"
        if name.endswith(".pt"):
            _same(torch.load(run / name, weights_only=True), torch.load(reference / name, weights_only=True), where)
        elif name.endswith(".json"):
            _same(json.loads((run / name).read_text()), json.loads((reference / name).read_text()), where)
        elif name.endswith(".jsonl"):
            ours = [json.loads(line) for line in (run / name).read_text().splitlines()]
            theirs = [json.loads(line) for line in (reference / name).read_text().splitlines()]
            _same(ours, theirs, where)
        else:  # plots: drawn from the same numbers
            assert (run / name).read_bytes() == (reference / name).read_bytes(), where


def _kill_everywhere(tmp_path: Path, argv: list[str], run: Path) -> int:
    """Kill ``argv`` at every write point, resume, compare; returns the number of write points."""
    from tpp.cli.main import main

    # in this process, so that the children start with everything imported (torch._dynamo alone
    # takes seconds the first time an optimizer is built)
    assert main(argv) == 0
    reference = tmp_path / "reference"
    run.rename(reference)
    point = 0
    while True:
        point += 1
        shutil.rmtree(run, ignore_errors=True)
        outcome = _child(argv, point)
        if outcome == 0:  # the run finished before reaching this point: every point was tried
            _compare(run, reference, "a run that was not killed")
            return point - 1
        assert outcome == "killed", f"write point {point}: exit code {outcome}"
        assert _child([*argv, "--resume"], None) == 0, f"resume after a kill at write point {point}"
        _compare(run, reference, f"killed at write point {point}")


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "run"
    assert _child(["train", "--model", "mlp7_linear", "--dataset", "mnist_subset", "--epochs", "1", "--lr", "0.01",
                   "--out", str(out), "--quiet"], None) == 0
    return out / "last.pt"


def test_train_killed_at_every_write_resumes_to_the_same_files(tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--model", "mlp7_linear", "--dataset", "mnist_subset", "--train-subset", "300",
            "--batch-size", "100", "--epochs", "3", "--lr", "0:0.05,1:0.01", "--out", str(run), "--quiet"]
    points = _kill_everywhere(tmp_path, argv, run)
    assert points >= 2 * (2 + 3 * 2)  # config, meta, then last.pt and metrics (best.pt when better) per epoch


def test_prune_killed_at_every_write_resumes_to_the_same_files(tmp_path, base_checkpoint):
    run = tmp_path / "run"
    argv = ["prune", "--method", "tpp", "--model", "mlp7_linear", "--dataset", "mnist_subset",
            "--checkpoint", str(base_checkpoint), "--train-subset", "300", "--batch-size", "100",
            "--ratio", "0.5", "--reg-step", "0.25", "--reg-interval", "1", "--stabilize-iters", "2",
            "--zero-out-interval", "1", "--ft-epochs", "2", "--ft-lr", "0.01", "--jsv-every-epoch",
            "--out", str(run), "--quiet"]
    points = _kill_everywhere(tmp_path, argv, run)
    # config, meta, regularisation epochs, pruned.pt, two fine-tuning epochs, pruned_model.pt, jsv.png, report.json
    assert points >= 2 * (2 + 2 + 1 + 2 * 2 + 3)
