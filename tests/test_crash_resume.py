"""Kill a real run at every file-write point, resume it, and get the files of an uninterrupted run.

Each run is a forked child of the test process (torch is imported once) that SIGKILLs itself at
write point K (``TPP_KILL_AT_WRITE``, see :mod:`tpp.util.fault_injection`): point 2n-1 is "the n-th
file is complete in its temporary file but not renamed", point 2n "renamed, nothing after it
done". The child after it runs the same command with ``--resume``; the folder must then hold the
same files as the uninterrupted run's, with the same tensors, metrics records and report (up to
wall times and the ``--resume`` flag itself), and no temporary file.

Every write point is still tried; two of them run at once (each in a folder of its own, the run's
``--out`` relative to it so that recorded paths are the same), which halves the wall time on two cores.
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

from tpp.util.fault_injection import KILL_AT_WRITE_ENV

# values that differ between any two runs, interrupted or not
VOLATILE = {"time", "wall_seconds", "resume", "start_time"}
SKIP_FILES = {"meta.json"}  # argv, host and start time of each process (a resume is appended there)


def _child(argv: list[str], kill_at: int | None, cwd: Path | None = None) -> int | str:
    """Run ``tpp ARGV`` in a forked process (in ``cwd``); its exit code, or "killed"."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            if cwd is not None:
                os.chdir(cwd)
            if kill_at is None:
                os.environ.pop(KILL_AT_WRITE_ENV, None)
            else:
                os.environ[KILL_AT_WRITE_ENV] = str(kill_at)
            from tpp.cli.main import main

            code = main(argv)
        finally:
            os._exit(code)
    return _outcome(pid)


def _outcome(pid: int) -> int | str:
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return "killed"
    return os.WEXITSTATUS(status)


def _kill_and_resume(argv: list[str], point: int, cwd: Path) -> int:
    """Fork a child that kills a run at ``point`` and resumes it; its exit code says how that went:
    0 resumed, 10 the run finished before reaching the point, 11 the killed run failed, 12 the resume failed."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 13
        try:
            outcome = _child(argv, point, cwd)
            code = (
                10
                if outcome == 0
                else 11
                if outcome != "killed"
                else (0 if _child([*argv, "--resume"], None, cwd) == 0 else 12)
            )
        finally:
            os._exit(code)
    return int(_outcome(pid))


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


def _kill_everywhere(tmp_path: Path, argv: list[str], workers: int = 2) -> int:
    """Kill ``argv`` (whose ``--out`` is the relative ``run``) at every write point, resume, compare;
    returns the number of write points. ``workers`` points are tried at once, each in its own folder."""
    from tpp.cli.main import main

    reference = tmp_path / "reference"
    reference.mkdir()
    # in this process, so that the children start with everything imported (torch._dynamo alone
    # takes seconds the first time an optimizer is built)
    here = os.getcwd()
    os.chdir(reference)
    try:
        assert main(argv) == 0
    finally:
        os.chdir(here)
    points = 0
    while True:
        batch = {}
        for at in range(points + 1, points + workers + 1):
            folder = tmp_path / f"point{at}"
            folder.mkdir()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                code = 13
                try:
                    code = _kill_and_resume(argv, at, folder)
                finally:
                    os._exit(code)
            batch[at] = (pid, folder)
        finished = False
        for at, (pid, folder) in batch.items():
            code = _outcome(pid)
            assert code in (0, 10), f"write point {at}: " + {11: "the killed run failed", 12: "the resume failed"}.get(
                code, f"exit code {code}"
            )
            if code == 10:  # the run finished before reaching this point: every point was tried
                _compare(folder / "run", reference / "run", "a run that was not killed")
                finished = True
            else:
                assert not finished, f"write point {at} was reached although an earlier one was not"
                _compare(folder / "run", reference / "run", f"killed at write point {at}")
                points = at
            shutil.rmtree(folder)
        if finished:
            return points


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "run"
    assert (
        _child(
            [
                "train",
                "--model",
                "mlp7_linear",
                "--dataset",
                "mnist_subset",
                "--epochs",
                "1",
                "--lr",
                "0.01",
                "--out",
                str(out),
                "--quiet",
            ],
            None,
        )
        == 0
    )
    return out / "last.pt"


def test_train_killed_at_every_write_resumes_to_the_same_files(tmp_path):
    argv = [
        "train",
        "--model",
        "mlp7_linear",
        "--dataset",
        "mnist_subset",
        "--train-subset",
        "300",
        "--batch-size",
        "100",
        "--epochs",
        "3",
        "--lr",
        "0:0.05,1:0.01",
        "--out",
        "run",
        "--quiet",
    ]
    points = _kill_everywhere(tmp_path, argv)
    assert points >= 2 * (2 + 3 * 2)  # config, meta, then last.pt and metrics (best.pt when better) per epoch


def test_prune_killed_at_every_write_resumes_to_the_same_files(tmp_path, base_checkpoint):
    argv = [
        "prune",
        "--method",
        "tpp",
        "--model",
        "mlp7_linear",
        "--dataset",
        "mnist_subset",
        "--checkpoint",
        str(base_checkpoint),
        "--train-subset",
        "300",
        "--batch-size",
        "100",
        "--ratio",
        "0.5",
        "--reg-step",
        "0.25",
        "--reg-interval",
        "1",
        "--stabilize-iters",
        "2",
        "--zero-out-interval",
        "1",
        "--ft-epochs",
        "2",
        "--ft-lr",
        "0.01",
        "--jsv-every-epoch",
        "--out",
        "run",
        "--quiet",
    ]
    points = _kill_everywhere(tmp_path, argv)
    # config, meta, regularisation epochs, pruned.pt, two fine-tuning epochs, pruned_model.pt, jsv.png, report.json
    assert points >= 2 * (2 + 2 + 1 + 2 * 2 + 3)
