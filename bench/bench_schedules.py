"""TPP's regularisation schedules compared: the paper's full one, ``--fast`` and the adaptive one.

For each dataset and seed, one base model is pretrained on the training set less a held-out
validation split (10%, never trained on); each schedule then regularises a copy with TPP (ratio 0.8,
its prune LR: 1e-3 unless the schedule names another), the channels are removed, and the pruned
model is fine-tuned twice, at an initial LR of 1e-2 and of 1e-3 (x0.1 halfway). Recorded per run:
validation and test top-1 right after removal and of the final fine-tuned model (the last epoch: no
epoch is picked), mean JSV right after removal (train mode, as the paper), regularisation iterations
and wall time. Schedules are chosen on the validation numbers; the test numbers are reported. Each run is cached in ``--work`` (one JSON per dataset,
seed and schedule), so the benchmark resumes and can run in several processes:

    python bench/bench_schedules.py --datasets mnist --seeds 0 1 2 --schedules full
    python bench/bench_schedules.py --datasets mnist fashion_mnist --seeds 0 1 2   # then the rest
    python bench/bench_schedules.py --summary      # bench/results/schedules.json and the table

The non-linear CNN case (``--model resnet20 --datasets fashion_mnist --schedules recipe adaptive_h2000``,
a 4,000-image subset) compares the short fixed schedule of ``recipes/fashion_mnist_resnet20.yaml`` with
the adaptive one: the paper's 110,000-iteration schedule would take about 9 hours per run there on
this CPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from tpp import training
from tpp.checkpoints import load_checkpoint, load_model_weights, make_payload, save_checkpoint
from tpp.data import build_loaders
from tpp.jobs import JobContext, PruneJobConfig, run_prune_job
from tpp.models import create_model, example_inputs
from tpp.util.atomic import atomic_write_json

FULL = dict(reg_step=1e-4, reg_interval=10, stabilize_iters=10_000, zero_out_interval=100)
FAST = dict(reg_step=1e-3, reg_interval=10, stabilize_iters=1_000, zero_out_interval=100)
SCHEDULES: dict[str, tuple[str, dict[str, Any], float]] = {  # name -> (method, its options, prune LR)
    "full": ("tpp", FULL, 1e-3),
    "fast": ("tpp", FAST, 1e-3),
    # tpp-adaptive at two paces: its default (2000) and a faster one (500: fewer iterations, less accurate)
    "adaptive_h2000": ("tpp-adaptive", dict(halving_iters=2000), 1e-3),
    "adaptive_h500": ("tpp-adaptive", dict(halving_iters=500), 1e-3),
    # the same at a 10x higher LR while regularising: the kept filters take over the pruned ones' work
    # faster (one of issue 19's ideas for the adaptive schedule's goal)
    "fast_plr1e-2": ("tpp", FAST, 1e-2),
    "adaptive_h2000_plr1e-2": ("tpp-adaptive", dict(halving_iters=2000), 1e-2),
    "adaptive_h1000_plr1e-2": ("tpp-adaptive", dict(halving_iters=1000), 1e-2),
    # the CNN case: the recipe's short fixed schedule, and the adaptive one
    "recipe": ("tpp", dict(reg_step=5e-3, reg_interval=1, stabilize_iters=200, zero_out_interval=10), 1e-3),
}
VAL_SPLIT = 0.1
MODELS = {  # model -> (pretraining epochs and LR, train subset, fine-tuning epochs)
    "mlp7_linear": dict(pretrain=(10, "0:0.01,5:0.001"), subset=None, ft_epochs=10),
    "resnet20": dict(pretrain=(8, "0:0.1,4:0.01,6:0.001"), subset=4000, ft_epochs=4),
}
FT_LRS = (0.01, 0.001)


def _loaders(model_name: str, dataset: str, seed: int, args: argparse.Namespace):
    """(train, validation, test, info): the validation split is carved from the training set."""
    common = dict(batch_size=128, seed=seed, train_subset=MODELS[model_name]["subset"], val_split=VAL_SPLIT)
    train, valid, info = build_loaders(dataset, args.data_dir, eval_split="valid", **common)
    test = build_loaders(dataset, args.data_dir, eval_split="test", **common)[1]
    return train, valid, test, info


def _base(model_name: str, dataset: str, seed: int, loaders, work: Path) -> torch.nn.Module:
    """The pretrained base model of a dataset and seed (trained once, then read from ``work``)."""
    info = loaders[3]
    training.seed_everything(seed)
    model = create_model(model_name, num_classes=info.num_classes, in_channels=info.in_channels)
    path = work / f"base_{model_name}_{dataset}_s{seed}.pt"
    if path.is_file():
        load_model_weights(model, load_checkpoint(path), path)
        return model
    epochs, lr = MODELS[model_name]["pretrain"]
    optimizer = training.build_optimizer(model, 0.01, 0.9, 5e-4)
    training.Trainer(
        model, optimizer, loaders[0], loaders[1], epochs=epochs, schedule=training.parse_lr_schedule(lr), quiet=True
    ).fit()
    work.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, make_payload(model))
    return model


def _finetune(model: torch.nn.Module, loaders, lr: float, epochs: int) -> tuple[float, float]:
    """Fine-tune (validation after each epoch); the final model's (validation, test) top-1."""
    optimizer = training.build_optimizer(model, lr, 0.9, 5e-4)
    schedule = training.parse_lr_schedule(f"0:{lr},{epochs // 2}:{lr / 10}")
    result = training.Trainer(
        model, optimizer, loaders[0], loaders[1], epochs=epochs, schedule=schedule, quiet=True
    ).fit()
    return result.last_top1, training.evaluate(model, loaders[2])["top1"]


def run_one(model_name: str, dataset: str, seed: int, schedule: str, args: argparse.Namespace) -> dict[str, Any]:
    path = args.work / f"{model_name}_{dataset}_s{seed}_{schedule}.json"
    if path.is_file():
        return json.loads(path.read_text())
    loaders = _loaders(model_name, dataset, seed, args)
    base = _base(model_name, dataset, seed, loaders, args.work)
    ratio = "*layer*.conv1:0.9" if model_name == "resnet20" else 0.8
    inputs = example_inputs(model_name, in_channels=1, batch_size=2)
    training.seed_everything(seed)
    method, options, prune_lr = SCHEDULES[schedule]
    job = PruneJobConfig(
        method=method,
        ratio=ratio,
        pruner_options=dict(options),
        prune_lr=prune_lr,
        ft_epochs=0,
        jsv_batches=1,
        jsv_mode="train",
    )
    started = time.perf_counter()
    pruned, report = run_prune_job(copy.deepcopy(base), loaders[0], loaders[1], inputs, job, JobContext(quiet=True))
    seconds = time.perf_counter() - started
    result = {
        "model": model_name,
        "dataset": dataset,
        "seed": seed,
        "schedule": schedule,
        "method": method,
        "options": options,
        "prune_lr": prune_lr,
        "val_split": VAL_SPLIT,
        "iterations": report["regularization"]["iterations"],
        "regularization_seconds": seconds,
        "valid_before": report["accuracy_before"]["top1"],
        "valid_after_removal": report["accuracy_after_removal"]["top1"],
        "test_after_removal": training.evaluate(pruned, loaders[2])["top1"],
        "jsv_after_removal": report["jsv_after_prune"]["mean"],
        "schedule_summary": report["regularization"].get("schedule"),
        "threads": torch.get_num_threads(),
    }
    for lr in FT_LRS:
        training.seed_everything(seed)
        valid, test = _finetune(copy.deepcopy(pruned), loaders, lr, MODELS[model_name]["ft_epochs"])
        result[f"valid_lr{lr:g}"], result[f"test_lr{lr:g}"] = valid, test
    args.work.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, result)
    return result


def summary(work: Path, out: Path) -> dict[str, Any]:
    runs = [json.loads(p.read_text()) for p in sorted(work.glob("*_s*_*.json")) if not p.name.startswith("base_")]
    runs = [run for run in runs if run.get("val_split") == VAL_SPLIT]  # runs of the protocol above only
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["model"], run["dataset"], run["schedule"]), []).append(run)
    keys = (
        "iterations",
        "regularization_seconds",
        "valid_after_removal",
        "test_after_removal",
        "jsv_after_removal",
        *(f"{split}_lr{lr:g}" for split in ("valid", "test") for lr in FT_LRS),
    )
    rows = []
    for (model, dataset, schedule), members in sorted(groups.items()):
        row = {"model": model, "dataset": dataset, "schedule": schedule, "seeds": sorted(m["seed"] for m in members)}
        for key in keys:
            values = [m[key] for m in members if m.get(key) is not None]
            row[key] = {"mean": statistics.fmean(values), "std": statistics.pstdev(values)} if values else None
        rows.append(row)
    result = {
        "benchmark": "schedules",
        "command": "python bench/bench_schedules.py (see its docstring)",
        "rows": rows,
        "runs": runs,
    }
    atomic_write_json(out, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mlp7_linear", choices=sorted(MODELS))
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--schedules", nargs="+", default=["full", "fast", "adaptive_h2000", "adaptive_h500"], choices=sorted(SCHEDULES)
    )
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--work", type=Path, default=Path("runs") / "bench_schedules_val")
    parser.add_argument("--summary", action="store_true", help="only aggregate the finished runs")
    args = parser.parse_args()
    out = Path(__file__).parent / "results" / "schedules.json"
    if not args.summary:
        for dataset in args.datasets:
            for seed in args.seeds:
                for schedule in args.schedules:
                    result = run_one(args.model, dataset, seed, schedule, args)
                    print(
                        json.dumps(
                            {
                                k: result[k]
                                for k in (
                                    "model",
                                    "dataset",
                                    "seed",
                                    "schedule",
                                    "iterations",
                                    "valid_after_removal",
                                    "valid_lr0.01",
                                    "valid_lr0.001",
                                    "test_lr0.01",
                                    "test_lr0.001",
                                )
                            }
                        ),
                        flush=True,
                    )
    for row in summary(args.work, out)["rows"]:
        cells = [f"{k} {row[k]['mean']:.4g}±{row[k]['std']:.2g}" for k in row if isinstance(row.get(k), dict)]
        print(row["model"], row["dataset"], row["schedule"], row["seeds"], "; ".join(cells))


if __name__ == "__main__":
    main()
