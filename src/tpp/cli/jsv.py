"""``tpp jsv``: trainability of a checkpoint, as the mean Jacobian singular value (docs/method.md#jsv)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tpp.cli.arguments import add_data_args, add_model_args
from tpp.cli.checks import check_language_model
from tpp.cli.common import add_command, positive_int
from tpp.cli.job_setup import prepare_model_and_data
from tpp.errors import ConfigError

DESCRIPTION = """\
Jacobian singular values (JSV) of the logits with respect to the input, per example, on the first
--batches batches of the training data (as the paper measures them). Prints mean, std, min, max and
the mean condition number. Dynamical isometry means JSVs close to 1. The data defaults to what
the checkpoint records.

examples:
  tpp jsv --checkpoint runs/job/pruned_model.pt   # the data the file records
  tpp jsv --checkpoint base.pt --model resnet56 --dataset cifar10 --batches 4 --train-mode
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tpp jsv``."""
    parser = add_command(
        subparsers, "jsv", help="Jacobian singular values (trainability) of a checkpoint", description=DESCRIPTION
    )
    parser.add_argument(
        "--checkpoint", metavar="FILE", help="tpp checkpoint, pruned model or state_dict (or --model with --weights)"
    )
    add_model_args(parser, required=False)
    add_data_args(parser, train=True)
    parser.add_argument("--batches", type=positive_int, default=1, help="how many batches to measure")
    parser.add_argument("--split", default="train", choices=("train", "test"), help="which split to read")
    parser.add_argument(
        "--train-mode", action="store_true", help="BatchNorm in train mode, as the paper measured (stats restored)"
    )
    parser.add_argument(
        "--directions",
        type=positive_int,
        metavar="R",
        help="estimate the mean JSV with R Lanczos steps instead of K exact VJPs (many classes; eval mode only)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--config", metavar="FILE", help="YAML file of option values")
    return parser


def run(args: argparse.Namespace) -> int:
    """Measure and print the JSV summary. Returns 0."""
    from tpp.cli.loading import require_trained_model

    require_trained_model(args)
    if args.train_mode and args.directions:
        raise ConfigError("--directions estimates in eval mode only; drop --train-mode or --directions")
    from tpp import training
    from tpp.checkpoints import load_checkpoint
    from tpp.metrics.jacobian import jacobian_singular_values

    device = training.resolve_device(args.device)
    payload = load_checkpoint(args.checkpoint) if args.checkpoint else {}
    # the language-model check reads the split measured, after --train-mode is refused for it (below)
    prepared = prepare_model_and_data(args, payload, device, batch_size=args.batch_size, seed=False, check_text=False)
    model, info, text = prepared.model, prepared.info, prepared.text
    train_loader, test_loader = prepared.train_loader, prepared.test_loader
    loader = train_loader if args.split == "train" else test_loader
    if text:  # next-token logits by the input embeddings (tpp.metrics.language), in eval mode
        from tpp.metrics.language import DIRECTIONS, language_model_jsv

        if args.train_mode:
            raise ConfigError("--train-mode measures BatchNorm batch statistics; a language model has none: drop it")
        check_language_model(model, next(iter(loader))[0][:2].to(device), info)
        result = language_model_jsv(
            model, loader, max_batches=args.batches, num_directions=args.directions or DIRECTIONS
        )
    else:
        result = jacobian_singular_values(
            model, loader, max_batches=args.batches, train_mode=args.train_mode, num_directions=args.directions
        )
    summary = result.as_dict()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()))
    return 0
