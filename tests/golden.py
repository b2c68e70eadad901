"""Golden trajectories: a redesign of the pruning core must reproduce these bit for bit.

Each case runs one method's whole life cycle on real data (the embedded MNIST subset): the
regularisation phase with the pruner's hooks (or ~300 fine-tuning steps for one-shot methods),
removal with the optimizer re-pointed, the method's after-prune hook, then fine-tuning with its
fine-tuning penalty. It records every loss, lambda and phase, the selected channels, and a SHA-256
of every tensor of the final model, so "identical" means identical bits, not "close".

Record (only before a change that must not alter behaviour, or when the behaviour change is the
point and is said in the commit):  ``python -m tests.golden --record``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tests.loop import pruner_step

GOLDEN_FILE = Path(__file__).with_name("data") / "golden_trajectories.json"
METHODS = ("tpp", "greg1", "l1+orthp", "kernorth+l1", "l1+orthconv")
MODELS = ("mlp7_linear", "resnet20")
BATCH = 16
# a short schedule that still passes through every phase: lambda reaches 1 after 100 steps,
# then 100 stabilisation steps with the layer-wise zero-out
SCHEDULE = dict(reg_step=0.02, reg_interval=2, reg_ceiling=1.0, stabilize_iters=100, zero_out_interval=10)
ORTH = dict(orth_iters=150)
FINETUNE_STEPS = 100  # after a regularisation phase; one-shot methods fine-tune for 300


def environment() -> dict[str, str]:
    """What bit-exactness depends on: torch build, CPU instruction set, thread count."""
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "threads": str(torch.get_num_threads()),
    }


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def _batches(model_name: str):
    from tpp.data.embedded import load_mnist_subset

    images, labels = load_mnist_subset("train")
    x = images[: 40 * BATCH].float() / 255.0
    if model_name == "resnet20":
        x = F.avg_pool2d(x, 2)  # 16x16: the same code paths, a quarter of the time
    y = labels[: 40 * BATCH]
    step = 0
    while True:
        i = step % 40
        yield x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]
        step += 1


def run_case(method_name: str, model_name: str) -> dict[str, Any]:
    """One method's life cycle on one model; returns the trajectory as plain data."""
    import tpp.pruning as pruning
    from tpp.models import create_model
    from tpp.training import build_optimizer

    torch.manual_seed(0)
    model = create_model(model_name, in_channels=1)
    data = _batches(model_name)
    inputs = next(_batches(model_name))[0][:2]
    method = pruning.get_method(method_name)
    options = dict(ratio=0.5, scope="internal", global_ratio=None)
    if method_name in ("tpp", "greg1"):
        options.update(SCHEDULE if method_name == "tpp" else {k: v for k, v in SCHEDULE.items() if k != "zero_out_interval"})
    if method_name == "kernorth+l1":
        options.update(ORTH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = method.make_pruner(model, inputs, **options)
    optimizer = build_optimizer(model, 0.01)
    record: dict[str, Any] = {"reg_loss": [], "lambda": [], "phase": []}
    while method.regularized and not pruner.done:
        x, y = next(data)
        loss = pruner_step(pruner, optimizer, F.cross_entropy(model(x), y))
        record["reg_loss"].append(float(loss.detach()).hex())
        record["lambda"].append(float(pruner.reg_value).hex())
        record["phase"].append(pruner.phase)
        assert len(record["reg_loss"]) < 1000, "the regularisation phase never ended"
    model = pruner.prune(optimizer)
    record["pruned_indices"] = {k: list(map(int, v)) for k, v in sorted(pruner.pruned_indices.items())}
    record["after_removal"] = {k: _digest(v) for k, v in model.state_dict().items()}
    if method.after_prune is not None:
        method.after_prune(model)
    finetune = build_optimizer(model, 0.01)
    penalty = method.finetune_penalty(model) if method.finetune_penalty is not None else None
    record["ft_loss"] = []
    for _ in range(FINETUNE_STEPS if method.regularized else 300):
        x, y = next(data)
        loss = F.cross_entropy(model(x), y)
        if penalty is not None:
            loss = loss + penalty()
        finetune.zero_grad()
        loss.backward()
        finetune.step()
        record["ft_loss"].append(float(loss.detach()).hex())
    record["final"] = {k: _digest(v) for k, v in model.state_dict().items()}
    return record


def record_all() -> dict[str, Any]:
    """Every case, with the environment they were recorded in."""
    torch.set_num_threads(1)
    cases = {f"{m}/{n}": run_case(m, n) for m in METHODS for n in MODELS}
    return {"environment": environment(), "cases": cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", action="store_true", help=f"overwrite {GOLDEN_FILE.name}")
    args = parser.parse_args()
    result = record_all()
    if args.record:
        GOLDEN_FILE.parent.mkdir(exist_ok=True)
        GOLDEN_FILE.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN_FILE}")
    else:
        golden = json.loads(GOLDEN_FILE.read_text())
        same = [k for k in result["cases"] if golden["cases"].get(k) == result["cases"][k]]
        print(f"{len(same)}/{len(result['cases'])} cases identical")


if __name__ == "__main__":
    main()
