"""How far GReg-1's growing L2 shrinks the pruned filters in the ResNet-20 recipe's short schedule.

Chooses ``greg1.reg_ceiling`` of ``recipes/fashion_mnist_resnet20.yaml`` on the validation split (never
on the test set): for each ceiling, lambda grows by ceiling/100 every step for 100 steps and stays at
the ceiling for 60 more (prune LR 1e-3, SGD momentum 0.9, weight decay 5e-4, batch 64, ratio 0.9 on
``*layer*.conv1``, seed 0). Prints one JSON line per ceiling: the pruned filters' mean L2 norm over the
kept filters' (per layer: the largest and the mean over the 9 layers; GReg's own stop is 1/1000) and
the validation top-1 right after removal.

    .venv/bin/python scripts/greg1_ceiling_pilot.py --checkpoint runs/resnet20_fmnist_base/last.pt \\
        --ceilings 1 5 20 100 1000 > bench/results/greg1_ceiling_pilot.jsonl
"""

from __future__ import annotations

import argparse
import copy
import json

import torch

from tpp import training
from tpp.checkpoints import load_checkpoint, load_model_weights
from tpp.data import build_loaders
from tpp.models import create_model, example_inputs
from tpp.pruning import get_method

RAMP, HOLD = 100, 60  # steps of growth, steps at the ceiling: the recipe's 160 regularisation steps


def _norm_ratios(model: torch.nn.Module, pruned: dict[str, list[int]]) -> list[float]:
    """Per pruned layer: mean L2 norm of its pruned filters over that of its kept ones."""
    modules = dict(model.named_modules())
    ratios = []
    for name, indices in pruned.items():
        norms = modules[name].weight.detach().flatten(1).norm(dim=1)
        mask = torch.zeros(len(norms), dtype=torch.bool)
        mask[indices] = True
        ratios.append((norms[mask].mean() / norms[~mask].mean()).item())
    return ratios


def run(base: torch.nn.Module, train, valid, ceiling: float) -> dict:
    training.seed_everything(0)
    model = copy.deepcopy(base)
    options = dict(reg_step=ceiling / RAMP, reg_interval=1, reg_ceiling=ceiling, stabilize_iters=HOLD)
    pruner = get_method("greg1").pruner(
        model, example_inputs("resnet20", in_channels=1, batch_size=2), ratio="*layer*.conv1:0.9", **options
    )
    optimizer = training.build_optimizer(model, 1e-3, 0.9, 5e-4)
    batches, steps = iter(train), 0
    model.train()
    while not pruner.done:
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(train)
            x, y = next(batches)
        optimizer.zero_grad()
        (torch.nn.functional.cross_entropy(model(x), y) + pruner.penalty()).backward()
        pruner.regularize()
        optimizer.step()
        pruner.step()
        steps += 1
    ratios = _norm_ratios(model, pruner.pruned_indices)
    top1 = training.evaluate(pruner.prune(optimizer), valid)["top1"]
    return {
        "ceiling": ceiling,
        "options": options,
        "steps": steps,
        "max_ratio": max(ratios),
        "mean_ratio": sum(ratios) / len(ratios),
        "valid_top1_after_removal": top1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="the recipe's base model")
    parser.add_argument("--ceilings", nargs="+", type=float, default=[1, 5, 20, 100, 1000])
    parser.add_argument("--data-dir", default="../shared/data")
    args = parser.parse_args()
    train, valid, _ = build_loaders(
        "fashion_mnist", args.data_dir, batch_size=64, seed=0, val_split=0.1, eval_split="valid"
    )
    base = create_model("resnet20", num_classes=10, in_channels=1)
    load_model_weights(base, load_checkpoint(args.checkpoint), args.checkpoint)
    for ceiling in args.ceilings:
        print(json.dumps(run(base, train, valid, ceiling)), flush=True)


if __name__ == "__main__":
    main()
