"""Golden trajectories: every method's whole life cycle, recorded so that a change can be held to it.

Each case runs one method's life cycle on real data (the embedded MNIST subset): the regularisation
phase with the pruner's hooks (or ~300 fine-tuning steps for one-shot methods), removal with the
optimizer re-pointed, the method's after-prune hook, then fine-tuning with its fine-tuning penalty.
It records every loss, lambda and phase, the selected channels, and a SHA-256 of every tensor of the
final model, so "identical" means identical bits, not "close".

Two uses:

* ``tests/test_golden.py`` (in ``make test``) holds any machine to the committed recording
  (``tests/data/golden_trajectories.json``) in what does not depend on the CPU: selection, phases,
  lambda, the linear MLP's losses to a tolerance and resnet20's first steps. Re-record it only when a
  behaviour change is the point, and say so in the commit:
  ``python -m tests.golden --record --file tests/data/golden_trajectories.json``.
* Bit for bit, as a developer tool on *one* machine: ``make golden-record`` before a refactor that must
  not change behaviour, ``make golden-check`` after it. Bits depend on the CPU model, instruction set,
  torch build and thread count, so this comparison belongs to one machine, never to the test suite.
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
# the developer's own bit-exact recording (git-ignored): only comparable on the machine that wrote it
LOCAL_FILE = Path(__file__).resolve().parents[1] / ".golden" / "trajectories.json"
METHODS = ("tpp", "greg1", "l1+orthp", "kernorth+l1", "l1+orthconv")
MODELS = ("mlp7_linear", "resnet20")
BATCH = 16
# a short schedule that still passes through every phase: lambda reaches 1 after 100 steps,
# then 100 stabilisation steps with the layer-wise zero-out
SCHEDULE = dict(reg_step=0.02, reg_interval=2, reg_ceiling=1.0, stabilize_iters=100, zero_out_interval=10)
ORTH = dict(orth_iters=150)
FINETUNE_STEPS = 100  # after a regularisation phase; one-shot methods fine-tune for 300


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict[str, str]:
    """What bit-exactness depends on: torch build, CPU model and instruction set, thread count
    (and more that is not listed, such as the kernels a library picks at run time)."""
    return {
        "torch": torch.__version__,
        "cpu": _cpu_model(),
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
        yield x[i * BATCH : (i + 1) * BATCH], y[i * BATCH : (i + 1) * BATCH]
        step += 1


def run_case(method_name: str, model_name: str, finetune_steps: int | None = None) -> dict[str, Any]:
    """One method's life cycle on one model; returns the trajectory as plain data.

    ``finetune_steps`` shortens fine-tuning (default: 100 after a regularisation phase, 300 for
    one-shot methods); the recording always uses the default."""
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
        options.update(
            SCHEDULE if method_name == "tpp" else {k: v for k, v in SCHEDULE.items() if k != "zero_out_interval"}
        )
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
    if finetune_steps is None:
        finetune_steps = FINETUNE_STEPS if method.regularized else 300
    for _ in range(finetune_steps):
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


def _first_difference(got: dict[str, Any], want: dict[str, Any]) -> str:
    for key in sorted(set(got) | set(want)):
        if got.get(key) != want.get(key):
            if isinstance(got.get(key), list) and isinstance(want.get(key), list):
                at = next(
                    (i for i, (a, b) in enumerate(zip(got[key], want[key])) if a != b),
                    min(len(got[key]), len(want[key])),
                )
                return f"{key}[{at}]"
            return key
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--record", action="store_true", help="run every case and write the recording to --file")
    action.add_argument("--check", action="store_true", help="run every case and compare it bit for bit with --file")
    parser.add_argument("--file", type=Path, default=LOCAL_FILE, help=f"the recording (default: {LOCAL_FILE})")
    args = parser.parse_args()
    if args.check and not args.file.is_file():
        print(f"no recording at {args.file}; run `make golden-record` first (before your change)")
        return 2
    result = record_all()
    if args.record:
        args.file.parent.mkdir(parents=True, exist_ok=True)
        args.file.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        print(f"wrote {args.file} ({len(result['cases'])} cases, {result['environment']})")
        return 0
    golden = json.loads(args.file.read_text())
    if golden["environment"] != result["environment"]:
        print(
            f"warning: recorded in {golden['environment']}, running in {result['environment']}: "
            "low bits may differ for reasons that are not your change"
        )
    differing = 0
    for case, got in sorted(result["cases"].items()):
        where = _first_difference(got, golden["cases"].get(case, {}))
        differing += bool(where)
        print(f"{case:28s} {'identical' if not where else 'DIFFERS at ' + where}")
    print(f"{len(result['cases']) - differing}/{len(result['cases'])} cases identical bit for bit")
    return 1 if differing else 0


if __name__ == "__main__":
    raise SystemExit(main())
