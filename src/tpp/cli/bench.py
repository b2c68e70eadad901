"""``tpp bench latency``: is the pruned model actually faster? Measured, not counted."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tpp.cli.common import add_command, positive_int

DESCRIPTION = """\
Prune a registry model (architecture only: latency does not depend on the weights) and time the
unpruned and pruned models side by side, interleaved: eager PyTorch and, when installed, ONNX
Runtime. Prints median latency, spread, measured speedup and measured / FLOPs speedup.

examples:
  tpp bench latency --model resnet56 --ratio '*layer*.conv1:0.5'
  tpp bench latency --model resnet56 --ratio 0.5 --scope all --batch-sizes 1,64 --out latency.json
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tpp bench latency``."""
    parser = add_command(subparsers, "bench", help="latency of pruned vs unpruned models", description=DESCRIPTION)
    parser.add_argument("what", choices=("latency",), help="what to benchmark")
    parser.add_argument("--model", default="resnet56", help="registry model name")
    parser.add_argument("--ratio", default="*layer*.conv1:0.5", help="a number or 'PATTERN:R,...'")
    parser.add_argument("--scope", default="internal", choices=("internal", "all"))
    parser.add_argument("--batch-sizes", default="1,64", help="comma-separated batch sizes")
    parser.add_argument("--backends", default="torch,onnxruntime", help="torch and/or onnxruntime")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=positive_int, help="timed repetitions per model (default: by batch size)")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (default: usable cores)")
    parser.add_argument("--out", help="also write the full result as JSON here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out that tpp did not write")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print one line per backend and batch size. Returns 0."""
    from tpp.deploy import run_latency_bench
    from tpp.errors import ConfigError
    from tpp.pruning.selection import parse_ratio
    from tpp.util.atomic import atomic_write_json

    from tpp.util.owned import GENERATOR, json_is_ours, refuse_foreign

    try:
        batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    except ValueError:
        raise ConfigError(f"malformed --batch-sizes {args.batch_sizes!r}: use e.g. 1,64") from None
    if min(batch_sizes) < 1:
        raise ConfigError(f"--batch-sizes {args.batch_sizes!r} holds a batch size below 1; use e.g. 1,64")
    if args.out:
        refuse_foreign(args.out, json_is_ours, args.overwrite)  # before minutes of timing
    result = run_latency_bench(args.model, parse_ratio(args.ratio), args.scope, batch_sizes,
                               tuple(b for b in args.backends.split(",") if b), args.device, args.repeats, args.threads)
    for row in result["rows"]:
        print(json.dumps(row, default=str))
    if args.out:
        atomic_write_json(args.out, {"generator": f"{GENERATOR} bench", **result})
    return 0
