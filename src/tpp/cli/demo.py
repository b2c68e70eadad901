"""``tpp demo``: TPP vs L1 on the built-in MNIST subset, in a few minutes on a laptop CPU."""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

from tpp.cli.common import add_command

DESCRIPTION = """\
Train mlp7_linear (the paper's linear MLP) on the built-in real-MNIST subset, prune 80% of its hidden
units with TPP (short schedule) and with one-shot L1, fine-tune both at LR 1e-3, then print a
side-by-side table and save a plot of test accuracy against fine-tuning epoch.
"""

DEMO_TPP_SCHEDULE = dict(reg_step=1e-3, reg_interval=1, stabilize_iters=200, zero_out_interval=20)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tpp demo``."""
    parser = add_command(
        subparsers, "demo", help="TPP vs L1 on the built-in MNIST subset (minutes, CPU)", description=DESCRIPTION
    )
    parser.add_argument("--out", default="runs/demo", help="output folder (replaced if it holds an earlier demo)")
    parser.add_argument("--ratio", type=float, default=0.8, help="fraction of hidden units pruned per layer")
    parser.add_argument("--pretrain-epochs", type=int, default=10, help="epochs of the base model")
    parser.add_argument("--ft-epochs", type=int, default=10, help="fine-tuning epochs after removal")
    parser.add_argument("--ft-lr", default="0.001", help="fine-tuning LR schedule")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="only the final table")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the demo; prints the table and writes demo_results.json and demo_accuracy.png."""
    import torch

    from tpp import training
    from tpp.data import build_loaders
    from tpp.jobs import JobContext, PruneJobConfig, run_prune_job
    from tpp.models import create_model, example_inputs
    from tpp.util.atomic import atomic_write_json

    started = time.perf_counter()
    out = Path(args.out)
    _check_out(out)
    training.seed_everything(args.seed)
    say = (lambda _: None) if args.quiet else print
    train_loader, test_loader, info = build_loaders("mnist_subset", batch_size=128, seed=args.seed)
    model = create_model("mlp7_linear", num_classes=info.num_classes, in_channels=info.in_channels)
    say(f"1/3 training mlp7_linear on the built-in MNIST subset ({train_loader.dataset_size} images)")
    optimizer = training.build_optimizer(model, 0.01)
    base = training.Trainer(
        model,
        optimizer,
        train_loader,
        test_loader,
        epochs=args.pretrain_epochs,
        schedule=training.parse_lr_schedule("0.01"),
        quiet=True,
    ).fit()
    say(f"    base model: top-1 {base.last_top1:.2f}%")
    inputs = example_inputs("mlp7_linear", in_channels=1, batch_size=2)
    reports = {}
    for step, method in enumerate(("tpp", "l1"), start=2):
        say(f"{step}/3 pruning {args.ratio:.0%} with {method.upper()}, then fine-tuning {args.ft_epochs} epochs")
        job = PruneJobConfig(
            method=method,
            ratio=args.ratio,
            pruner_options=dict(DEMO_TPP_SCHEDULE),
            ft_epochs=args.ft_epochs,
            ft_lr=args.ft_lr,
        )
        folder = out / method
        context = JobContext(out=folder, quiet=True)
        if folder.exists():  # an earlier demo's job (checked by _check_out)
            import shutil

            shutil.rmtree(folder)
        torch.manual_seed(args.seed)
        _, reports[method] = run_prune_job(copy.deepcopy(model), train_loader, test_loader, inputs, job, context)
    table = results_table(reports)
    print(table)
    plot = plot_finetuning(reports, out / "demo_accuracy.png")
    atomic_write_json(
        out / "demo_results.json", {"generator": "tpp demo", **{m: _short(r) for m, r in reports.items()}}
    )
    print(f"plot: {plot}  results: {out / 'demo_results.json'}  ({time.perf_counter() - started:.0f}s)")
    return 0


def results_table(reports: dict[str, dict[str, Any]]) -> str:
    """Markdown table: accuracy after removal and after fine-tuning, params, FLOPs, speedup."""
    lines = [
        "| method | top-1 before | top-1 after removal | best top-1 after fine-tuning | params | FLOPs | speedup |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, r in reports.items():
        lines.append(
            f"| {method.upper()} | {r['accuracy_before']['top1']:.2f} | {r['accuracy_after_removal']['top1']:.2f} | "
            f"{r['finetune']['best_top1']:.2f} | {r['counts_before']['params']:,} -> {r['counts_after']['params']:,} | "
            f"{r['counts_before']['flops']:,} -> {r['counts_after']['flops']:,} | {r['speedup']:.2f}x |"
        )
    return "\n".join(lines)


def plot_finetuning(reports: dict[str, dict[str, Any]], path: Path) -> Path:
    """Test accuracy against fine-tuning epoch (epoch 0 = right after removal), one curve per method."""
    from tpp.reporting.plots import new_figure, save_png

    figure, axes = new_figure(1, 1, 6, 4)
    axis = axes[0][0]
    for method, r in reports.items():
        curve = [r["accuracy_after_removal"]["top1"]] + [h["test_top1"] for h in r["finetune"]["history"]]
        axis.plot(range(len(curve)), curve, marker="o", label=method.upper())
    axis.set_xlabel("fine-tuning epoch (0 = right after removal)")
    axis.set_ylabel("test top-1 (%)")
    axis.set_title("mlp7_linear on MNIST subset: TPP vs L1")
    axis.grid(alpha=0.3)
    axis.legend()
    save_png(figure, path, "tpp demo", dpi=100)
    return path


def _check_out(out: Path) -> None:
    """Refuse an --out whose files the demo would replace but tpp did not write."""
    from tpp.errors import CheckpointError
    from tpp.training import RunDirectory
    from tpp.util.owned import json_is_ours, png_is_ours, refuse_foreign

    for method in ("tpp", "l1"):  # job folders of an earlier demo are deleted and rewritten
        folder = out / method
        if folder.is_dir():
            foreign = sorted(p.name for p in folder.iterdir() if p.name not in RunDirectory.OWN_FILES)
            if foreign:
                raise CheckpointError(f"{folder} holds files tpp did not write ({foreign[0]}); pass another --out")
        elif folder.exists():
            raise CheckpointError(f"{folder} is a file the demo would replace; pass another --out")
    refuse_foreign(out / "demo_results.json", json_is_ours, False, fix="pass another --out")
    refuse_foreign(out / "demo_accuracy.png", png_is_ours, False, fix="pass another --out")


def _short(report: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "accuracy_before",
        "accuracy_after_removal",
        "counts_before",
        "counts_after",
        "speedup",
        "finetune",
        "wall_seconds",
    )
    return {k: report[k] for k in keys if k in report}
