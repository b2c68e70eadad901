"""The options of ``tpp prune``: its help text and parser (the command itself: :mod:`tpp.cli.prune`)."""

from __future__ import annotations

import argparse
from typing import Any

from tpp.cli.arguments import add_data_args, add_model_args, add_runtime_args, add_speed_args
from tpp.cli.common import add_command
from tpp.cli.method_options import add_method_options
from tpp.cli.option_types import (
    epoch_count_or_zero,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from tpp.pruning.calibration import IMPORTANCES
from tpp.training.optim import DEFAULT_MOMENTUM, DEFAULT_WEIGHT_DECAY

DESCRIPTION = """\
Prune a pretrained model in three stages: (1) the method's regularisation phase (TPP: growing
gram + L2 penalties at a constant LR until lambda reaches its ceiling, then stabilisation with
layer-wise zero-out), (2) physical removal of the pruned channels, (3) fine-tuning with a fresh
SGD optimizer. Writes report.json and the pruned model (pruned_model.pt) to --out.

Defaults are the official code's CIFAR settings (110k regularisation iterations, 120 fine-tuning
epochs): see what they cost here with --dry-run, and shorten them with --fast (10x) or
--reg-step/--reg-interval/--stabilize-iters and --ft-epochs. With --checkpoint of a tpp run, the
model and the data (dataset, image size, normalisation) default to what the file records. An
interrupted job continues with `tpp prune --out DIR --resume`.

examples:
  tpp prune --method tpp --model resnet56 --dataset cifar10 --checkpoint base.pt \\
      --ratio '*layer*.conv1:0.9' --ft-epochs 120 --ft-lr 0:0.01,60:0.001,90:0.0001
  tpp prune --method l1 --model mlp7_linear --dataset mnist --checkpoint runs/mlp/best.pt --ratio 0.8
  tpp prune --method l1 --model hf:ResNetForImageClassification --weights resnet.safetensors \
      --dataset imagefolder --data-dir photos --ratio 0.5 --ft-epochs 10
  torchrun --nproc_per_node 4 -m tpp prune --method tpp --model resnet56 --dataset cifar10 \
      --checkpoint base.pt --ratio '*layer*.conv1:0.5' --batch-size 128 --amp bf16 --out runs/r56
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tpp prune``."""
    from tpp.pruning.registry import list_methods

    parser = add_command(
        subparsers,
        "prune",
        help="prune a pretrained model (TPP or a baseline) and fine-tune it",
        description=DESCRIPTION,
    )
    add_model_args(parser)
    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="the trained model: a tpp checkpoint or state_dict (or use --weights / --pretrained)",
    )
    add_data_args(parser, train=True)
    group = parser.add_argument_group("what to prune")
    group.add_argument("--method", default="tpp", choices=list_methods(), help="pruning method")
    group.add_argument(
        "--ratio",
        default=None,
        metavar="R",
        help="per-layer ratio: a number, or 'PATTERN:R,...' on module names (e.g. '*layer*.conv1:0.5')",
    )
    group.add_argument(
        "--global-ratio", type=fraction, metavar="R", help="rank channels network-wide and prune this fraction"
    )
    group.add_argument(
        "--speedup",
        type=positive_float,
        metavar="X",
        help="find the ratio that gives this FLOPs speedup (within 2%%); with --ratio 'PATTERN:{ratio}' "
        "the search runs on the pattern's ratio",
    )
    group.add_argument(
        "--target-flops", type=positive_float, metavar="F", help="like --speedup, for a FLOPs budget per image"
    )
    group.add_argument(
        "--scope",
        default="internal",
        choices=("internal", "all"),
        help="internal: the paper's (no residual-coupled channels); all: every dependency group",
    )
    group.add_argument("--ignore", action="append", default=[], metavar="PATTERN", help="module names never pruned")
    group.add_argument(
        "--importance",
        default="l1",
        choices=IMPORTANCES,
        help="how channels are chosen: l1 (the paper: smallest filters), activation (Wanda-sp: |W| "
        "times the input activation norm) or taylor (first-order |w * grad|, as LLM-Pruner)",
    )
    group.add_argument(
        "--heads",
        action="store_true",
        help="also offer whole attention heads (whole key/value groups) of transformers models as "
        "units, e.g. --ratio '*.mlp.*:0.2,*self_attn*:0.34'",
    )
    group.add_argument(
        "--calibration-batches",
        type=positive_int,
        default=8,
        metavar="N",
        help="training batches that --importance activation / taylor read",
    )
    add_method_options(parser)
    group = parser.add_argument_group("regularisation phase (methods that regularise before removal)")
    group.add_argument("--prune-lr", type=positive_float, default=1e-3, help="constant LR of the regularisation phase")
    group.add_argument(
        "--fast",
        action="store_true",
        help="10x shorter regularisation (lambda grows 10x faster, 10x shorter stabilisation): a first "
        "try on a CPU; deviates from the paper",
    )
    group = parser.add_argument_group("fine-tuning")
    group.add_argument("--ft-epochs", type=epoch_count_or_zero, default=120, help="fine-tuning epochs (0: none)")
    group.add_argument("--ft-lr", default="0:0.01,60:0.001,90:0.0001", help="fine-tuning LR schedule (paper notation)")
    group.add_argument(
        "--budget-steps",
        type=positive_int,
        metavar="N",
        help="equal budgets: N optimizer steps after the base model, regularisation and fine-tuning "
        "together; fine-tuning gets what the regularisation leaves, in as many epochs as that takes "
        "(instead of --ft-epochs; a relative --ft-lr such as step:0.01 scales with them)",
    )
    group.add_argument("--momentum", type=non_negative_float, default=DEFAULT_MOMENTUM, help="SGD momentum")
    group.add_argument("--weight-decay", type=non_negative_float, default=DEFAULT_WEIGHT_DECAY, help="L2 weight decay")
    group = parser.add_argument_group("trainability (Jacobian singular values)")
    group.add_argument(
        "--jsv-batches", type=non_negative_int, default=1, help="training batches for the JSV after removal (0: skip)"
    )
    group.add_argument(
        "--jsv-every-epoch",
        action="store_true",
        help="also log the mean JSV after every fine-tuning epoch (plot: jsv.png)",
    )
    group.add_argument(
        "--jsv-mode",
        choices=("eval", "train"),
        default="eval",
        help="eval: BatchNorm running statistics; train: batch statistics, as the paper measures "
        "(running statistics are restored)",
    )
    add_runtime_args(parser, out=True)
    add_speed_args(parser)
    group = parser.add_argument_group("run directory")
    group.add_argument("--resume", action="store_true", help="continue the job in --out where it stopped")
    group.add_argument("--overwrite", action="store_true", help="reuse a non-empty --out")
    group.add_argument(
        "--dry-run",
        action="store_true",
        help="check every option, that the checkpoint and the data can be read and what would be "
        "removed; train and write nothing",
    )
    return parser
