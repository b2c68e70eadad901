"""``tpp run RECIPE.yaml``: run a recipe's grid of pruning experiments (resumable) and its report."""

from __future__ import annotations

import argparse
from typing import Any

from tpp.cli.common import add_command

DESCRIPTION = """\
Run a recipe (recipes/*.yaml: the paper's experiments as a grid of seeds x methods x ratios x
fine-tuning LRs). The base model is pretrained once per seed (or loaded from the recipe's
checkpoint); every job writes its own folder under --out, and jobs with a report.json are
skipped, so rerunning the same command continues an interrupted grid. At the end the recipe's
markdown report (tables + plots) is (re)written.

--fast shortens the TPP regularisation 10x (reg_step x10, stabilize_iters / 10): it deviates
from the paper, for users who cannot afford its 110k regularisation iterations.

examples:
  tpp run recipes/mnist_mlp7_linear.yaml --data-dir ../shared/data --dry-run
  tpp run recipes/mnist_mlp7_linear.yaml --data-dir ../shared/data --seeds 0 --methods tpp,l1 --lrs 1
  tpp run recipes/cifar10_resnet56.yaml --checkpoint base/resnet56.pt --ratios 0.5,0.9 --device cuda
  tpp run recipes/imagenet_resnet50.yaml --dry-run --ratios 2.31x
"""


def _csv(kind: type):
    def parse(text: str) -> list:
        try:
            return [kind(item.strip()) for item in text.split(",") if item.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None

    return parse


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tpp run``."""
    parser = add_command(
        subparsers,
        "run",
        help="run a recipe (a grid of pruning experiments) and write its report",
        description=DESCRIPTION,
    )
    parser.add_argument("recipe", metavar="RECIPE", help="recipe YAML file (see recipes/)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: runs/<recipe name>)")
    group = parser.add_argument_group("select part of the grid")
    group.add_argument("--seeds", type=_csv(int), metavar="S,...", help="only these seeds")
    group.add_argument(
        "--ratios",
        type=_csv(str),
        metavar="R,...",
        help="only these ratios: values (0.8), paper speedups (1.49x) or labels from --dry-run",
    )
    group.add_argument("--methods", type=_csv(str), metavar="M,...", help="only these methods (e.g. tpp,l1)")
    group.add_argument(
        "--lrs", type=_csv(int), metavar="I,...", help="only these fine-tuning LRs (indices into finetune.lrs)"
    )
    group = parser.add_argument_group("runtime")
    group.add_argument("--data-dir", metavar="DIR", help="dataset root (overrides the recipe's data_dir)")
    group.add_argument("--download", action="store_true", help="download missing dataset files from the official URLs")
    group.add_argument("--checkpoint", metavar="FILE", help="pretrained base model (overrides the recipe's)")
    group.add_argument("--report", metavar="FILE", help="markdown report path (overrides the recipe's)")
    group.add_argument("--overwrite", action="store_true", help="replace a report file that tpp did not write")
    group.add_argument("--device", default="auto", metavar="DEV", help="auto, cpu, cuda or cuda:N")
    group.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    group.add_argument(
        "--dry-run",
        action="store_true",
        help="print the grid, each ratio's FLOPs speedup and whether the checkpoint and data can be read; "
        "train nothing",
    )
    group.add_argument(
        "--fast", action="store_true", help="10x shorter TPP schedule (reg_step x10, stabilize_iters / 10)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Run (or dry-run) the recipe. Returns 0."""
    from pathlib import Path

    from tpp.recipes import load_recipe, run_recipe
    from tpp.training import resolve_device

    recipe = load_recipe(args.recipe)
    out = Path(args.out) if args.out else Path("runs") / recipe.name
    device = "cpu" if args.dry_run else resolve_device(args.device)
    folders = run_recipe(
        recipe,
        out,
        seeds=args.seeds,
        ratios=args.ratios,
        methods=args.methods,
        lrs=args.lrs,
        data_dir=args.data_dir,
        download=args.download,
        checkpoint=args.checkpoint,
        report=args.report,
        device=device,
        quiet=args.quiet,
        dry_run=args.dry_run,
        fast=args.fast,
        overwrite=args.overwrite,
    )
    if not args.dry_run:
        print(f"{recipe.name}: {len(folders)} job(s) finished under {out}")
    return 0
