"""Cost of one TPP training step (penalty + regularize + step) relative to a plain SGD step.

Side by side in one process, interleaved, medians of many repetitions :

* ``plain``: forward, cross-entropy, backward, SGD step;
* ``tpp``: the same plus ``pruner.penalty()``, ``pruner.regularize()``, ``pruner.step()`` with
  lambda > 0 (so every term is really computed);
* ``loop``: the same with a penalty written as the official code writes it (docs/method.md#official-code): per
  pruned index Python loops and fresh masks every step.

Run: ``python bench/bench_tpp_step.py [--device cpu|cuda] [--repeats 30]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import tpp
from tpp.models import create_model, example_inputs


def loop_style_penalty(model: torch.nn.Module, pruned: dict[str, list[int]], strength: float) -> torch.Tensor:
    """The official formulation: rebuild the target with per-index loops on every call."""
    modules = dict(model.named_modules())
    total = 0.0
    for name, indices in pruned.items():
        weight = modules[name].weight.flatten(1)
        gram = weight @ weight.t()
        target = gram.detach().clone()
        for j in indices:
            target[j, :] = 0
            target[:, j] = 0
        total = total + F.mse_loss(gram, target)
    return strength * total


def loop_style_regularize(model, pruned, strength: float) -> None:
    modules = dict(model.named_modules())
    names = list(modules)
    for name, indices in pruned.items():
        conv = modules[name]
        mask = torch.zeros_like(conv.weight)  # fresh mask every step, as the official code does
        mask[indices] = strength
        conv.weight.grad += mask * conv.weight
        bn = next(modules[n] for n in names[names.index(name) + 1:] if isinstance(modules[n], torch.nn.BatchNorm2d))
        bn_mask = torch.zeros_like(bn.weight)
        bn_mask[indices] = strength
        bn.weight.grad += bn_mask * bn.weight
        bn.bias.grad += bn_mask * bn.bias


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--ratio", default="*layer*.conv1:0.5")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))

    torch.manual_seed(0)
    model = create_model(args.model).to(device)
    pruner = tpp.TPPPruner(model, example_inputs(args.model, batch_size=2).to(device),
                           ratio=tpp.pruning.parse_ratio(args.ratio), reg_step=1e-4, reg_interval=1)
    pruner.iteration = 5000  # lambda = 0.5: every term is active
    pruned = pruner.pruned_indices
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def plain() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def with_tpp() -> None:
        loss = F.cross_entropy(model(x), y) + pruner.penalty()
        optimizer.zero_grad()
        loss.backward()
        pruner.regularize()
        optimizer.step()
        pruner.step()
        pruner.iteration = 5000  # stay in the regularisation phase

    def with_loops() -> None:
        strength = pruner.reg_value
        loss = F.cross_entropy(model(x), y) + loop_style_penalty(model, pruned, 1000.0 * strength)
        optimizer.zero_grad()
        loss.backward()
        loop_style_regularize(model, pruned, strength)
        optimizer.step()

    def tpp_extra_only() -> None:
        """Only the work TPP adds to a step: penalty forward + backward, regularize, step."""
        optimizer.zero_grad()
        pruner.penalty().backward()
        pruner.regularize()
        pruner.step()
        pruner.iteration = 5000

    variants = {"plain": plain, "tpp": with_tpp, "loop": with_loops, "tpp_extra": tpp_extra_only}
    times: dict[str, list[float]] = {k: [] for k in variants}
    for fn in variants.values():  # warm-up
        for _ in range(3):
            fn()
    sync()
    for _ in range(args.repeats):  # interleaved so that drift hits every variant alike
        for name, fn in variants.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)

    median = {k: statistics.median(v) for k, v in times.items()}
    # paired: the ratio within each interleaved round, robust to slow drifts of machine load
    paired = {
        "tpp_over_plain": statistics.median(t / p for t, p in zip(times["tpp"], times["plain"])),
        "loop_over_plain": statistics.median(t / p for t, p in zip(times["loop"], times["plain"])),
    }
    result = {
        "benchmark": "tpp_step_overhead",
        "command": f"python bench/bench_tpp_step.py --device {args.device} --repeats {args.repeats}",
        "model": args.model, "ratio": args.ratio, "batch_size": args.batch_size, "device": str(device),
        "device_name": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": args.repeats,
        "median_seconds": median,
        "iqr_seconds": {k: statistics.quantiles(v, n=4)[2] - statistics.quantiles(v, n=4)[0] for k, v in times.items()},
        "tpp_over_plain": median["tpp"] / median["plain"],
        "loop_over_plain": median["loop"] / median["plain"],
        "tpp_over_loop": median["tpp"] / median["loop"],
        "paired": paired,
        # the added work timed alone (its own median) relative to a plain step: the least noisy estimate
        "tpp_over_plain_from_extra": 1.0 + median["tpp_extra"] / median["plain"],
        "load_average": list(os.getloadavg()),
    }
    out = args.out or Path(__file__).parent / "results" / f"tpp_step_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("median_seconds", "tpp_over_plain", "loop_over_plain", "paired",
                                             "tpp_over_plain_from_extra", "load_average")}, indent=2))


if __name__ == "__main__":
    main()
