"""Mixed precision and speed options of the Trainer: bf16 autocast on CPU, the GradScaler order
(regularisers act on unscaled gradients), scaler state in checkpoints, fp16-on-CPU refusal,
channels_last and the torch.compile fallback."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tpp import distributed
from tpp.checkpoints import load_checkpoint
from tpp.cli.main import main
from tpp.errors import ConfigError
from tpp.pruning.methods.tpp import TPPPruner
from tpp.training import StepHooks, Trainer, parse_lr_schedule
from tpp.training.amp import CompiledForward, MixedPrecision, SpeedOptions, check_amp

HAS_CPU_SCALER = hasattr(torch.amp, "GradScaler")


def _batches(n: int = 2, batch: int = 16, features: int = 8, classes: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(batch, features, generator=gen), torch.randint(0, classes, (batch,), generator=gen))
        for _ in range(n)
    ]


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))


def _trainer(model, loader, **kwargs) -> Trainer:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return Trainer(model, optimizer, loader, None, epochs=1, schedule=parse_lr_schedule("0.1"), quiet=True, **kwargs)


def test_bf16_autocast_step_on_cpu_is_finite_and_recorded():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    loader = [(torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
    seen = []
    model[0].register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    trainer = _trainer(model, loader, speed=SpeedOptions(amp="bf16", channels_last=True))
    result = trainer.fit()
    assert seen and all(dtype == torch.bfloat16 for dtype in seen)  # the convolution really ran in bf16
    assert torch.isfinite(torch.tensor(result.history[0]["train_loss"]))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay float32
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert trainer.checkpoint_payload()["amp"] == {"mode": "bf16", "scaler": None}


@pytest.mark.skipif(not HAS_CPU_SCALER, reason="torch.amp.GradScaler is missing")
def test_regulariser_sees_unscaled_gradients_under_a_grad_scaler():
    """scale(loss).backward(); unscale_; after_backward; step: TPP's L2 is added to true gradients."""
    loader = _batches(n=1)
    model = _mlp()
    reference = copy.deepcopy(model)
    pruner = TPPPruner(
        model, torch.randn(2, 8), ratio=0.5, gram_weight=0.0, reg_step=0.1, reg_interval=1, stabilize_iters=100
    )
    pruner.iteration = 3  # lambda = 0.3
    rows = torch.tensor(pruner.pruned_indices["0"])
    captured: dict[str, torch.Tensor] = {}

    def after_backward() -> None:
        captured["before"] = model[0].weight.grad.clone()
        captured["weight"] = model[0].weight.detach().clone()
        pruner.regularize()
        captured["after"] = model[0].weight.grad.clone()

    trainer = _trainer(model, loader, hooks=StepHooks(after_backward=after_backward))
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    trainer.precision = MixedPrecision(None, "cpu", scaler)
    trainer.fit()

    inputs, targets = loader[0]
    F.cross_entropy(reference(inputs), targets).backward()
    torch.testing.assert_close(captured["before"], reference[0].weight.grad, rtol=0, atol=1e-7)
    added = captured["after"] - captured["before"]
    expected = torch.zeros_like(added)
    expected[rows] = 0.3 * captured["weight"][rows]
    torch.testing.assert_close(added, expected, rtol=0, atol=1e-7)
    assert scaler.get_scale() == 1024.0  # no overflow: the step was taken, the scale kept


@pytest.mark.skipif(not HAS_CPU_SCALER, reason="torch.amp.GradScaler is missing")
def test_scaled_training_equals_plain_training_and_scaler_state_resumes(tmp_path: Path):
    loader = _batches(n=3)
    plain, scaled = _mlp(), _mlp()
    _trainer(plain, loader).fit()
    trainer = _trainer(scaled, loader, checkpoint_dir=tmp_path)
    trainer.precision = MixedPrecision(None, "cpu", torch.amp.GradScaler("cpu", init_scale=256.0, growth_interval=2))
    trainer.fit()
    for a, b in zip(plain.parameters(), scaled.parameters()):  # power-of-two scaling is exact
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    payload = load_checkpoint(tmp_path / "last.pt")
    assert payload["amp"]["scaler"]["scale"] == 512.0  # grew once after 2 clean steps
    resumed = _trainer(_mlp(), loader)
    resumed.precision = MixedPrecision(None, "cpu", torch.amp.GradScaler("cpu", init_scale=1.0))
    resumed.resume(tmp_path / "last.pt", payload)
    assert resumed.precision.scaler.get_scale() == 512.0


def test_fp16_on_cpu_is_a_one_line_config_error(tmp_path: Path, capsys):
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        check_amp("fp16", "cpu")
    assert check_amp(None, "cpu") is None and check_amp("bf16", "cpu") == torch.bfloat16
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--model",
            "mlp7_linear",
            "--dataset",
            "mnist_subset",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--amp",
            "fp16",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("tpp: error: --amp fp16 needs a CUDA device")
    assert not out.exists()


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch, capsys):
    def broken_compile(fn, *args, **kwargs):
        def fail(*a, **k):
            raise RuntimeError("backend exploded\nsecond line")

        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    loader = _batches(n=2)
    model, eager = _mlp(), _mlp()
    _trainer(model, loader, speed=SpeedOptions(compile=True)).fit()
    _trainer(eager, loader).fit()
    warnings = [line for line in capsys.readouterr().err.splitlines() if "torch.compile" in line]
    assert warnings == ["tpp: warning: torch.compile failed (backend exploded); training in eager mode"]
    assert model._compiled_call_impl is None  # eager again, so a pruner can trace it
    for a, b in zip(model.parameters(), eager.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_compiled_forward_restores_eager_module():
    model = _mlp()
    compiled = CompiledForward(model, warn=False)
    assert compiled.compiled and model._compiled_call_impl is not None
    compiled.restore()
    assert model._compiled_call_impl is None and not compiled.compiled


def test_single_process_distributed_helpers_are_no_ops():
    context = distributed.init_distributed(torch.device("cpu"))
    assert not context.enabled and context.is_main
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    assert distributed.prepare(conv, context, channels_last=True) is conv
    assert conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert distributed.run_on_main(context, lambda: 42) == 42
    assert distributed.broadcast_object("x") == "x"
    assert distributed.all_reduce_sum(torch.ones(2)).tolist() == [1.0, 1.0]
