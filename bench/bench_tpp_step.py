"""Cost of a TPP training step relative to a plain SGD step, and of the gram penalty on wide layers.

Side by side in one process, interleaved, medians of many repetitions (and the median of the
per-round ratios, robust to slow drifts of machine load). Per model case:

* ``plain``: forward, cross-entropy, backward, SGD step;
* ``tpp``: the same plus ``pruner.penalty()``, ``pruner.regularize()``, ``pruner.step()`` with
  lambda > 0 (so every term is really computed);
* ``full_gram``: the same with the gram term computed as before tpp 0.5 and as the official code
  defines it: the full ``N x N`` gram, masked, through autograd;
* ``loop`` (resnet56 only): the official code's style, per pruned index Python loops and fresh masks
  every step (docs/method.md#official-code).

Cases: ``resnet56`` (CIFAR, batch 128, the first conv of each block at 0.5), ``resnet50`` (224 px,
batch 8, the paper's 2.31x pattern), ``vit`` (a transformers ViT, 384 wide, 6 layers, 224 px, batch 8,
MLP ``fc1`` at 0.5; random weights, nothing downloaded), and ``sweep``: one ``Conv2d(C, C, 3)`` on an
8x8 input, batch 8, half its filters pruned, the gram penalty's forward+backward against the layer's
own forward+backward, for C = 64 ... 2048.

Run: ``python bench/bench_tpp_step.py [--cases resnet56 resnet50 vit sweep] [--threads 1] [--repeats 30]``
(results in ``bench/results/tpp_step_<device>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

import tpp
from tpp.models import create_model, example_inputs
from tpp.util.atomic import atomic_write_json

RESNET50_PATTERN = "*layer[1-3]*conv[1-2]:0.6,*layer4*conv[1-2]:0.21"  # 2.31x FLOPs (README, ImageNet recipe)
SWEEP_WIDTHS = (64, 128, 256, 512, 1024, 2048)


def full_gram_penalty(layers: list[tuple[nn.Module, torch.Tensor]]) -> torch.Tensor:
    """The gram term as the official code defines it: ``mean(((W W^T) ⊙ M)^2)`` with ``M`` zero on
    kept-kept entries, the full gram built and differentiated by autograd."""
    total = 0.0
    for module, mask in layers:
        rows = module.weight.flatten(1)
        total = total + ((rows @ rows.t()) * mask).square().mean()
    return total


def full_gram_mask(module: nn.Module, pruned: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """``module`` and the mask of its gram entries that have a pruned index (1 there, 0 on kept-kept)."""
    kept = torch.ones(module.weight.shape[0], device=module.weight.device)
    kept[pruned] = 0
    return module, 1.0 - torch.outer(kept, kept)


def full_gram_masks(pruner: tpp.TPPPruner) -> list[tuple[nn.Module, torch.Tensor]]:
    """Per gram layer of the pruner, its module and its full-gram mask."""
    return [
        full_gram_mask(member.module, member.local_indices(pruner._pruned_roots[unit.name]))
        for unit in pruner.units
        for member in unit.rows
    ]


def loop_style_penalty(model: nn.Module, pruned: dict[str, list[int]], strength: float) -> torch.Tensor:
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


def loop_style_regularize(model: nn.Module, pruned: dict[str, list[int]], strength: float) -> None:
    modules = dict(model.named_modules())
    names = list(modules)
    for name, indices in pruned.items():
        conv = modules[name]
        mask = torch.zeros_like(conv.weight)  # fresh mask every step, as the official code does
        mask[indices] = strength
        conv.weight.grad += mask * conv.weight
        bn = next(modules[n] for n in names[names.index(name) + 1 :] if isinstance(modules[n], nn.BatchNorm2d))
        bn_mask = torch.zeros_like(bn.weight)
        bn_mask[indices] = strength
        bn.weight.grad += bn_mask * bn.weight
        bn.bias.grad += bn_mask * bn.bias


def _vit(device: torch.device) -> tuple[nn.Module, torch.Tensor, Callable[[Any], torch.Tensor]]:
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=6,
        intermediate_size=1536,
        image_size=224,
        patch_size=16,
        num_labels=10,
    )
    return ViTForImageClassification(config).to(device), torch.randn(2, 3, 224, 224), lambda out: out.logits


def _case(name: str, batch: int | None, device: torch.device):
    """(model, example inputs, batch, ratio, logits-of-output, image size)."""
    if name == "vit":
        model, inputs, logits = _vit(device)
        return model, inputs, batch or 8, "*mlp.fc1:0.5", logits, 224
    if name == "resnet50":
        return (
            create_model("resnet50", num_classes=1000),
            example_inputs("resnet50", batch_size=2),
            batch or 8,
            RESNET50_PATTERN,
            (lambda out: out),
            224,
        )
    return (
        create_model(name),
        example_inputs(name, batch_size=2),
        batch or 128,
        "*layer*.conv1:0.5",
        (lambda out: out),
        32,
    )


def _time(variants: dict[str, Callable[[], None]], repeats: int, sync: Callable[[], None]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in variants}
    for fn in variants.values():  # warm-up
        for _ in range(3):
            fn()
    sync()
    for _ in range(repeats):  # interleaved so that drift hits every variant alike
        for name, fn in variants.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def _ratios(times: dict[str, list[float]], base: str) -> dict[str, dict[str, float]]:
    median = {k: statistics.median(v) for k, v in times.items()}
    return {
        k: {
            "median_ratio": median[k] / median[base],
            "paired_ratio": statistics.median(t / b for t, b in zip(times[k], times[base])),
        }
        for k in times
        if k != base
    }


def bench_model(name: str, args: argparse.Namespace, device: torch.device, sync) -> dict[str, Any]:
    torch.manual_seed(0)
    model, inputs, batch, ratio, logits, size = _case(name, args.batch_size, device)
    model = model.to(device)
    pruner = tpp.TPPPruner(
        model, inputs.to(device), ratio=tpp.pruning.parse_ratio(ratio), reg_step=1e-4, reg_interval=1
    )
    pruner.iteration = 5000  # lambda = 0.5: every term is active
    masks = full_gram_masks(pruner)
    gram_weight = pruner.options.gram_weight
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def plain() -> None:
        loss = F.cross_entropy(logits(model(x)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def with_tpp() -> None:
        loss = F.cross_entropy(logits(model(x)), y) + pruner.penalty()
        optimizer.zero_grad()
        loss.backward()
        pruner.regularize()
        optimizer.step()
        pruner.step()
        pruner.iteration = 5000  # stay in the regularisation phase

    def with_full_gram() -> None:
        loss = F.cross_entropy(logits(model(x)), y) + gram_weight * pruner.reg_value * full_gram_penalty(masks)
        optimizer.zero_grad()
        loss.backward()
        pruner.regularize()
        optimizer.step()

    variants = {"plain": plain, "tpp": with_tpp, "full_gram": with_full_gram}
    if name == "resnet56":
        pruned = pruner.pruned_indices

        def with_loops() -> None:
            strength = pruner.reg_value
            loss = F.cross_entropy(model(x), y) + loop_style_penalty(model, pruned, gram_weight * strength)
            optimizer.zero_grad()
            loss.backward()
            loop_style_regularize(model, pruned, strength)
            optimizer.step()

        variants["loop"] = with_loops
    times = _time(variants, args.repeats, sync)
    return {
        "model": name,
        "command": f"python bench/bench_tpp_step.py --cases {name} --threads {args.threads} --repeats {args.repeats}",
        "ratio": ratio,
        "batch_size": batch,
        "image_size": size,
        "repeats": args.repeats,
        "gram_layers": len(masks),
        "median_seconds": {k: statistics.median(v) for k, v in times.items()},
        "over_plain": _ratios(times, "plain"),
    }


def bench_sweep(args: argparse.Namespace, device: torch.device, sync) -> list[dict[str, Any]]:
    """Penalty forward+backward vs the layer's forward+backward, one Conv2d(C, C, 3) on 8x8, batch 8."""
    from tpp.pruning.penalties import GramPenalty

    rows = []
    for width in SWEEP_WIDTHS:
        torch.manual_seed(0)
        conv = nn.Conv2d(width, width, 3, padding=1).to(device)
        x = torch.randn(8, width, 8, 8, device=device)
        pruned = torch.arange(0, width, 2)
        gram = GramPenalty([(conv, pruned)])
        masks = [full_gram_mask(conv, pruned)]

        def layer() -> None:
            conv.weight.grad = None
            conv(x).square().mean().backward()

        def pruned_rows() -> None:
            conv.weight.grad = None
            gram().backward()

        def full() -> None:
            conv.weight.grad = None
            full_gram_penalty(masks).backward()

        repeats = max(5, args.repeats // (1 if width <= 512 else 3))
        times = _time({"layer": layer, "penalty": pruned_rows, "full_gram_penalty": full}, repeats, sync)
        rows.append(
            {
                "width": width,
                "repeats": repeats,
                "median_seconds": {k: statistics.median(v) for k, v in times.items()},
                "over_layer": _ratios(times, "layer"),
            }
        )
        print(
            json.dumps({"width": width, **{k: round(v["paired_ratio"], 3) for k, v in rows[-1]["over_layer"].items()}}),
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["resnet56", "resnet50", "vit", "sweep"],
        choices=["resnet56", "resnet20", "resnet50", "vit", "sweep"],
    )
    parser.add_argument("--batch-size", type=int, default=None, help="override every model case's batch size")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads (default 1: least noise on a shared machine)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    out = args.out or Path(__file__).parent / "results" / f"tpp_step_{device.type}.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    result = {
        "benchmark": "tpp_step_overhead",
        "command": f"python bench/bench_tpp_step.py --cases {' '.join(args.cases)} --device {args.device} "
        f"--threads {args.threads} --repeats {args.repeats}",
        "device": str(device),
        "device_name": torch.cuda.get_device_name()
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cases": dict(previous.get("cases", {})) if isinstance(previous.get("cases"), dict) else {},
    }
    for case in args.cases:
        if case == "sweep":
            result["sweep"] = bench_sweep(args, device, sync)
            continue
        result["cases"][case] = bench_model(case, args, device, sync)
        print(
            json.dumps(
                {case: {k: round(v["paired_ratio"], 3) for k, v in result["cases"][case]["over_plain"].items()}}
            ),
            flush=True,
        )
    if "sweep" not in result and "sweep" in previous:
        result["sweep"] = previous["sweep"]  # cases run separately accumulate in one file
    result["load_average"] = list(os.getloadavg())
    atomic_write_json(out, result)


if __name__ == "__main__":
    main()
