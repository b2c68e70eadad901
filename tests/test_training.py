"""tpp.training (schedules, checkpoints, trainer, resume, run directory) and tpp.metrics.counting."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tpp.checkpoints import load_checkpoint, load_model_weights, save_checkpoint
from tpp.data import build_loaders
from tpp.errors import CheckpointError, ConfigError, DataError
from tpp.metrics import Counts, count, layer_table
from tpp.models import create_model, example_inputs
from tpp.training import (
    RunDirectory,
    StepHooks,
    Trainer,
    TrainingError,
    build_optimizer,
    evaluate,
    get_rng_state,
    parse_lr_schedule,
    resolve_device,
    seed_everything,
    set_rng_state,
)

# ----------------------------------------------------------------------------- LR schedules


@pytest.mark.parametrize(
    "text, total, expected",
    [
        ("0:0.01,60:0.001,90:0.0001", 120, {0: 0.01, 59: 0.01, 60: 0.001, 89: 0.001, 90: 0.0001, 119: 0.0001}),
        ("0.05", 10, {0: 0.05, 9: 0.05}),
        (" 0:0.1 , 5:0.01 ", 10, {4: 0.1, 5: 0.01}),
        ("step:0.01", 120, {59: 0.01, 60: 0.001, 90: 0.0001}),
        ("step:0.1", 10, {4: 0.1, 5: 0.01, 7: 0.01, 8: 0.001}),
        ("step:0.1", 1, {0: 0.1}),
        ("step:0.1", 3, {0: 0.1, 1: 0.1, 2: 0.01}),
        ("cosine:0.1", 10, {0: 0.1, 5: 0.05}),
    ],
)
def test_lr_schedule_values(text: str, total: int, expected: dict[int, float]) -> None:
    schedule = parse_lr_schedule(text)
    for epoch, lr in expected.items():
        assert schedule.lr_at(epoch, total) == pytest.approx(lr)
    assert parse_lr_schedule(schedule.text) == schedule  # canonical text round-trips


def test_cosine_decreases_towards_zero() -> None:
    lrs = [parse_lr_schedule("cosine:0.1").lr_at(e, 20) for e in range(20)]
    assert all(a > b for a, b in zip(lrs, lrs[1:])) and 0 < lrs[-1] < 0.002


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "abc",
        "1:0.1",
        "0:0.1,0:0.2",
        "0:0.1,60:0.01,30:0.001",
        "0:0.1,",
        ",0:0.1",
        "0:-1",
        "0:0",
        "0:nan",
        "0:inf",
        "0:x",
        "x:0.1",
        "-1:0.1",
        "0.5:0.1",
        "0:0.1:3",
        "0.1,0.2",
        "cosine:",
        "cosine:-0.1",
        "step:abc",
        "linear:0.1",
        "-0.01",
        "0",
    ],
)
def test_malformed_lr_schedules_raise_one_line_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_lr_schedule(text)
    message = str(info.value)
    assert "\n" not in message and "invalid LR schedule" in message and "0:0.01,60:0.001,90:0.0001" in message


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_and_atomic_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "epoch": 1})
    before = path.read_bytes()

    def failing_save(obj: object, handle) -> None:  # writes part of a file, then the disk is "full"
        handle.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(CheckpointError, match="No space left"):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "epoch": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left behind


def test_save_into_unwritable_location_is_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(blocker / "ckpt.pt", {"epoch": 0})
    assert "\n" not in str(info.value)
    assert blocker.read_text() == "keep"


def test_corrupt_truncated_and_missing_checkpoints(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"definitely not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="not a readable tpp checkpoint"):
        load_checkpoint(garbage)
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"model": create_model("resnet20").state_dict()})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


class _Sneaky:
    """Unpickling this would create a marker file: a weights-only load must never run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_load_refuses_pickled_objects(tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.ones(1)}, "payload": _Sneaky(marker)}, path)
    with pytest.raises(CheckpointError, match="holds pickled code .* that tpp will not run"):
        load_checkpoint(path)
    assert not marker.exists()


def test_load_model_weights_mismatch_and_module_prefix() -> None:
    model = create_model("mlp7_linear", in_channels=1)
    other = create_model("mlp7_linear", in_channels=1, width=50)
    with pytest.raises(CheckpointError) as info:
        load_model_weights(model, {"model": other.state_dict()}, "other.pt")
    message = str(info.value)
    assert "different architecture" in message and "fc1.weight [50,1024]" in message and "[100,1024]" in message
    wrapped = {f"module.{k}": v + 1 for k, v in model.state_dict().items()}  # as saved from DataParallel
    load_model_weights(model, wrapped, "dp.pt")
    assert torch.equal(model.state_dict()["fc1.bias"], wrapped["module.fc1.bias"])


def test_rng_state_survives_weights_only_checkpoint(tmp_path: Path) -> None:
    seed_everything(3)
    save_checkpoint(tmp_path / "rng.pt", {"rng": get_rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(99)
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_resolve_device() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="invalid device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


# ----------------------------------------------------------------------------- evaluation and trainer


def _setup(train_subset: int = 640):
    seed_everything(0)
    model = create_model("mlp7_linear", num_classes=10, in_channels=1)
    train, test, _ = build_loaders("mnist_subset", batch_size=64, train_subset=train_subset, seed=0)
    return model, build_optimizer(model, 0.02), train, test


def test_evaluate_restores_mode_and_caps_top5() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.5))
    model.train()
    model[1].eval()  # mixed modes must come back exactly
    batches = [(torch.randn(8, 1, 2, 2), torch.randint(0, 3, (8,))) for _ in range(2)]
    result = evaluate(model, batches, "cpu")
    assert result["top5"] == 100.0 and result["samples"] == 16 and 0 <= result["top1"] <= 100
    assert model.training and not model[1].training and model[2].training
    with pytest.raises(DataError):
        evaluate(model, [], "cpu")


def test_hooks_run_in_order_and_can_stop() -> None:
    model, optimizer, train, _ = _setup(train_subset=640)
    calls: list[str] = []

    def penalty() -> torch.Tensor:
        calls.append("penalty")
        return model.fc1.weight.pow(2).sum() * 1e-6

    hooks = StepHooks(
        penalty=penalty,
        after_backward=lambda: calls.append("backward" if model.fc1.weight.grad is not None else "no-grad"),
        after_step=lambda: calls.append("step"),
        should_stop=lambda: calls.count("step") >= 3,
    )
    trainer = Trainer(
        model, optimizer, train, None, epochs=5, schedule=parse_lr_schedule("0.01"), hooks=hooks, quiet=True
    )
    result = trainer.fit()
    assert calls == ["penalty", "backward", "step"] * 3
    assert result.stopped_early and result.epochs_completed == 1 and result.best_top1 is None
    assert "train_penalty" in result.history[0]


def test_nan_loss_raises_training_error() -> None:
    model, optimizer, train, _ = _setup(train_subset=128)
    hooks = StepHooks(penalty=lambda: torch.tensor(float("nan")))
    trainer = Trainer(
        model, optimizer, train, None, epochs=1, schedule=parse_lr_schedule("0.01"), hooks=hooks, quiet=True
    )
    with pytest.raises(TrainingError) as info:
        trainer.fit()
    assert "nan" in str(info.value) and "lower the learning rate" in str(info.value) and "\n" not in str(info.value)


class _Interrupt(Exception):
    pass


def test_resume_after_kill_is_bit_identical(tmp_path: Path) -> None:
    schedule = parse_lr_schedule("0:0.02,2:0.005")

    def noisy_hooks(model: nn.Module, trainer_ref: list, kill_at: int | None) -> StepHooks:
        def penalty() -> torch.Tensor:  # consumes the global torch RNG, so RNG restore matters
            return 1e-3 * torch.rand(()) * model.fc1.weight.mean()

        def after_step() -> None:
            if kill_at is not None and trainer_ref[0].global_step == kill_at:
                raise _Interrupt

        return StepHooks(penalty=penalty, after_step=after_step)

    def run(out: Path, kill_at: int | None = None, resume: bool = False) -> Trainer:
        model, optimizer, train, test = _setup()
        ref: list = []
        trainer = Trainer(
            model,
            optimizer,
            train,
            test,
            epochs=3,
            schedule=schedule,
            checkpoint_dir=out,
            hooks=noisy_hooks(model, ref, kill_at),
            quiet=True,
        )
        ref.append(trainer)
        if resume:
            assert trainer.resume(out / "last.pt") == 2
        trainer.fit()
        return trainer

    full = run(tmp_path / "full")
    (tmp_path / "killed").mkdir()
    with pytest.raises(_Interrupt):
        run(tmp_path / "killed", kill_at=2 * 10 + 4)  # 10 steps per epoch: dies inside the third epoch
    resumed = run(tmp_path / "killed", resume=True)
    final, again = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(final[k], again[k]) for k in final)
    assert resumed.best_top1 == full.best_top1 and resumed.global_step == full.global_step == 30


# ----------------------------------------------------------------------------- run directory


def test_run_directory_policy(tmp_path: Path) -> None:
    existing = tmp_path / "run"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not empty"):
        RunDirectory(existing)
    with pytest.raises(CheckpointError, match="--resume"):
        RunDirectory(existing, resume=True)  # no last.pt to resume from
    (existing / "best.pt").write_bytes(b"stale")
    run = RunDirectory(existing, overwrite=True)
    assert not (existing / "best.pt").exists()  # a stale checkpoint must not survive an overwrite
    run.write_config({"lr": "0.1", "path": tmp_path})
    meta = run.write_meta(seed=5)
    for epoch in range(3):
        run.log_epoch({"epoch": epoch, "test_top1": 10.0 * epoch})
    assert (existing / "notes.txt").read_text() == "mine"
    assert json.loads((existing / "config.json").read_text())["lr"] == "0.1"
    assert meta["seed"] == 5 and meta["torch_version"] == torch.__version__ and "tpp_version" in meta
    save_checkpoint(run.last_checkpoint, {"epoch": 2})
    with pytest.raises(CheckpointError, match=f"in use by tpp process {os.getpid()}"):
        RunDirectory(existing, resume=True)  # one writer at a time: `run` holds the folder's lock
    run.close()
    resumed = RunDirectory(existing, resume=True)
    resumed.truncate_metrics(2)
    lines = (existing / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]
    assert resumed.write_meta(seed=5)["resumes"][0]["seed"] == 5

    blocker = tmp_path / "regular_file"
    blocker.write_text("keep")
    with pytest.raises(CheckpointError) as info:
        RunDirectory(blocker / "sub")
    assert "\n" not in str(info.value) and blocker.read_text() == "keep"


# ----------------------------------------------------------------------------- counting


def test_count_resnet56_matches_paper_and_leaves_model_untouched() -> None:
    model = create_model("resnet56")
    model.train()
    bn = model.bn1
    stats = bn.running_mean.clone(), bn.num_batches_tracked.clone()
    counts = count(model, example_inputs("resnet56", batch_size=2))
    assert counts.params == sum(p.numel() for p in model.parameters())
    assert round(counts.params / 1e6, 2) == 0.85
    assert round(counts.flops / 1e9, 2) == 0.25 and counts.flops == 2 * counts.macs
    assert model.training and torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.num_batches_tracked, stats[1])
    assert count(nn.DataParallel(model), example_inputs("resnet56")) == counts
    half = Counts(params=counts.params // 2, macs=counts.macs // 2, flops=counts.flops // 2)
    assert half.speedup_over(counts) == pytest.approx(2.0, rel=1e-6)
    assert "FLOPs 0.25G" in str(counts)


def test_layer_table_rows_sum_to_totals() -> None:
    model = create_model("mlp7_linear", in_channels=1)
    inputs = example_inputs(model, batch_size=3)
    rows = layer_table(model, inputs)
    assert [r["name"] for r in rows] == ["flatten"] + [f"fc{i}" for i in range(1, 8)]
    fc1 = rows[1]
    assert fc1["output_shape"] == (100,) and fc1["params"] == 1024 * 100 + 100 and fc1["flops"] == 2 * fc1["macs"]
    totals = count(model, inputs)
    assert sum(r["macs"] for r in rows) == totals.macs and sum(r["params"] for r in rows) == totals.params
