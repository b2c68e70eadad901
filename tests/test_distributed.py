"""`torchrun --nproc_per_node 2 -m tpp prune` on CPU (gloo) equals one process with the same global batch.

mlp7_linear on the embedded MNIST subset has no BatchNorm, dropout or augmentation, so a 2-rank
DDP job must pick the same filters and end with the same weights as a single process, with only
rank 0 writing files. Also: resuming a DDP job, and a rank-0 failure reaching every rank.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import tpp
from tpp.cli.common import per_rank_batch_size
from tpp.cli.main import main
from tpp.errors import ConfigError

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo is not available"
)

SHORT = ["--reg-step", "0.1", "--reg-interval", "1", "--stabilize-iters", "10", "--zero-out-interval", "1"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _prune_args(checkpoint: Path, out: Path, *extra: str) -> list[str]:
    return [
        "prune",
        "--model",
        "mlp7_linear",
        "--dataset",
        "mnist_subset",
        "--checkpoint",
        str(checkpoint),
        "--ratio",
        "0.5",
        *SHORT,
        "--ft-lr",
        "0.001",
        "--batch-size",
        "128",
        "--jsv-batches",
        "0",
        "--out",
        str(out),
        "--quiet",
        "--threads",
        "1",
        *extra,
    ]


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "tpp",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("TPP_DEBUG", None)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
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
                "1",
                "--lr",
                "0.01",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    return out / "last.pt"


@pytest.fixture(scope="module")
def ddp_job(base, tmp_path_factory) -> Path:
    """A finished 2-rank job with 1 fine-tuning epoch."""
    root = tmp_path_factory.mktemp("ddp")
    done = _torchrun(_prune_args(base, root / "job", "--ft-epochs", "1"), cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "job"


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _assert_same_weights(a: Path, b: Path) -> None:
    first, second = tpp.load_pruned(a).state_dict(), tpp.load_pruned(b).state_dict()
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=1e-5, msg=key)


def _files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


def test_two_rank_prune_equals_one_process(ddp_job, base, tmp_path):
    single = tmp_path / "single"
    assert main(_prune_args(base, single, "--ft-epochs", "1")) == 0
    ddp_report = json.loads((ddp_job / "report.json").read_text())
    single_report = json.loads((single / "report.json").read_text())
    assert ddp_report["pruned_indices"] == single_report["pruned_indices"]
    assert ddp_report["counts_after"] == single_report["counts_after"]
    _assert_same_weights(ddp_job / "pruned_model.pt", single / "pruned_model.pt")
    # only rank 0 wrote: the same files, one metrics line per (stage, epoch), no stray folders
    assert _files(ddp_job) == _files(single)
    assert [p.name for p in ddp_job.parent.iterdir()] == ["job"]
    ddp_metrics, single_metrics = _metrics(ddp_job), _metrics(single)
    assert [(r["stage"], r["epoch"]) for r in ddp_metrics] == [(r["stage"], r["epoch"]) for r in single_metrics]
    # train loss/accuracy are reduced over ranks, so they are the global numbers
    for d, s in zip(ddp_metrics, single_metrics):
        assert d["train_loss"] == pytest.approx(s["train_loss"], abs=1e-5)
        assert d["train_top1"] == pytest.approx(s["train_top1"], abs=1e-9)
        assert d["test_top1"] == pytest.approx(s["test_top1"], abs=1e-9)
    assert json.loads((ddp_job / "config.json").read_text())["world_size"] == 2


def test_resumed_two_rank_job_equals_an_uninterrupted_single_process(ddp_job, base, tmp_path):
    job = tmp_path / "job"
    shutil.copytree(ddp_job, job)
    (job / "report.json").unlink()  # as if killed after the first fine-tuning epoch
    (job / "pruned_model.pt").unlink()
    done = _torchrun(_prune_args(base, job, "--ft-epochs", "2", "--resume"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    single = tmp_path / "single"
    assert main(_prune_args(base, single, "--ft-epochs", "2")) == 0
    _assert_same_weights(job / "pruned_model.pt", single / "pruned_model.pt")
    report = json.loads((job / "report.json").read_text())
    assert report["finetune"]["epochs"] == 2
    assert report["regularization"]["iterations"] > 0  # stage-1 stats survive the resume


def test_rank0_failure_stops_every_rank_with_one_line(base, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("not tpp's")
    done = _torchrun(_prune_args(base, out, "--ft-epochs", "1"), cwd=tmp_path)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("tpp: error:")]
    assert sorted(line.split(")")[0] for line in errors) == ["tpp: error: (rank 0", "tpp: error: (rank 1"]
    assert all("already exists and is not empty" in line for line in errors)
    assert Path(tpp.__file__).parent.as_posix() not in done.stderr  # no traceback from tpp itself
    assert _files(out) == {"keep.txt"}


def test_global_batch_must_split_evenly():
    assert per_rank_batch_size(128, 4) == 32
    with pytest.raises(ConfigError, match="cannot be split evenly over 3 processes"):
        per_rank_batch_size(128, 3)
