"""Accuracy cost of the ``--fast`` TPP schedule against the paper's full one.

Full (code default): reg_step 1e-4 every 10 iterations to 1.0, then 10,000 stabilisation
iterations = 110,000 iterations. Fast (``tpp run --fast``): reg_step x10, stabilisation / 10 =
11,000 iterations. Same base model, ratio, fine-tuning and seed for both; mlp7_linear at ratio 0.8.

Run one dataset per process (they are independent), then merge:
    python bench/bench_fast_schedule.py --dataset mnist
    python bench/bench_fast_schedule.py --dataset fashion_mnist
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from tpp import training
from tpp.data import build_loaders
from tpp.jobs import JobContext, PruneJobConfig, run_prune_job
from tpp.models import create_model, example_inputs
from tpp.util.atomic import atomic_write_json

SCHEDULES = {
    "full": dict(reg_step=1e-4, reg_interval=10, stabilize_iters=10_000, zero_out_interval=100),
    "fast": dict(reg_step=1e-3, reg_interval=10, stabilize_iters=1_000, zero_out_interval=100),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "fashion_mnist"))
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--ratio", type=float, default=0.8)
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--ft-epochs", type=int, default=10)
    parser.add_argument("--ft-lr", default="0:0.01,5:0.001")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    training.seed_everything(args.seed)
    train_loader, test_loader, info = build_loaders(args.dataset, args.data_dir, batch_size=128, seed=args.seed)
    base = create_model("mlp7_linear", num_classes=info.num_classes, in_channels=info.in_channels)
    optimizer = training.build_optimizer(base, 0.01, 0.9, 5e-4)
    started = time.perf_counter()
    pretrained = training.Trainer(
        base,
        optimizer,
        train_loader,
        test_loader,
        epochs=args.pretrain_epochs,
        schedule=training.parse_lr_schedule("0:0.01,5:0.001"),
        quiet=True,
    ).fit()
    result = {
        "benchmark": "fast_schedule",
        "dataset": args.dataset,
        "model": "mlp7_linear",
        "ratio": args.ratio,
        "base_top1": pretrained.last_top1,
        "pretrain_seconds": time.perf_counter() - started,
        "command": f"python bench/bench_fast_schedule.py --dataset {args.dataset}",
        "ft_epochs": args.ft_epochs,
        "ft_lr": args.ft_lr,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "schedules": {},
    }
    inputs = example_inputs("mlp7_linear", in_channels=1, batch_size=2)
    for name, schedule in SCHEDULES.items():
        torch.manual_seed(args.seed)
        job = PruneJobConfig(
            method="tpp",
            ratio=args.ratio,
            pruner_options=dict(schedule),
            ft_epochs=args.ft_epochs,
            ft_lr=args.ft_lr,
            jsv_batches=1,
        )
        started = time.perf_counter()
        _, report = run_prune_job(copy.deepcopy(base), train_loader, test_loader, inputs, job, JobContext(quiet=True))
        result["schedules"][name] = {
            "options": schedule,
            "iterations": report["regularization"]["iterations"],
            "top1_after_removal": report["accuracy_after_removal"]["top1"],
            "best_top1_after_finetune": report["finetune"]["best_top1"],
            "last_top1_after_finetune": report["finetune"]["last_top1"],
            "jsv_after_prune": report["jsv_after_prune"]["mean"],
            "seconds": time.perf_counter() - started,
        }
        print(name, json.dumps(result["schedules"][name]))
    full, fast = result["schedules"]["full"], result["schedules"]["fast"]
    result["accuracy_cost_best_top1"] = full["best_top1_after_finetune"] - fast["best_top1_after_finetune"]
    result["time_saving"] = full["seconds"] / fast["seconds"]
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / f"fast_schedule_{args.dataset}.json", result)
    print(json.dumps({k: result[k] for k in ("dataset", "accuracy_cost_best_top1", "time_saving")}))


if __name__ == "__main__":
    main()
