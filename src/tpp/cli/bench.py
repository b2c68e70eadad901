"""``tpp bench latency``: is the pruned model actually faster? Measured, not counted."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tpp.cli.arguments import add_model_args
from tpp.cli.common import add_command, positive_int

DESCRIPTION = """\
Time an unpruned model and its pruned version side by side, interleaved: eager PyTorch and, when
installed, ONNX Runtime. The pruned model is either --model (any spec; default resnet56) pruned
here with --ratio (architecture only: latency does not depend on the weights, so nothing is
trained) or the pruned architecture of --checkpoint (a pruned_model.pt of `tpp prune` or any tpp
checkpoint), timed against the unpruned architecture it records. Prints a table: one row per
backend, batch size and model with the median latency, inter-quartile range, 90th percentile and
throughput, and the measured and FLOPs speedups. --json prints the whole result as JSON instead;
--out also writes it to a file.

examples:
  tpp bench latency --model resnet56 --ratio '*layer*.conv1:0.5'
  tpp bench latency --model resnet56 --ratio 0.5 --scope all --batch-sizes 1,64 --out latency.json
  tpp bench latency --model mymodels:res_cnn --image-size 64 --ratio 0.5 --scope all
  tpp bench latency --checkpoint runs/mine/pruned_model.pt --model mymodels:res_cnn
  tpp bench latency --model hf:./my-resnet --ratio 0.3 --backends torch
"""

DEFAULT_MODEL = "resnet56"
PAPER_PATTERN = "*layer*.conv1"  # the first conv of each residual block (the paper's Table 1 layers)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tpp bench latency``."""
    parser = add_command(subparsers, "bench", help="latency of pruned vs unpruned models", description=DESCRIPTION)
    parser.add_argument("what", choices=("latency",), help="what to benchmark")
    add_model_args(parser, required=False, weights=False)
    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="time the pruned architecture of this file (tpp.save_pruned or tpp checkpoint) against "
        "its unpruned one; a plain state_dict needs --model",
    )
    parser.add_argument(
        "--ratio",
        help=f"a number or 'PATTERN:R,...' (default: '{PAPER_PATTERN}:0.5' for models "
        "with such layers, else 0.5; not with --checkpoint)",
    )
    parser.add_argument("--scope", default="internal", choices=("internal", "all"))
    parser.add_argument("--num-classes", type=positive_int, metavar="N", help="output classes of --model (default: 10)")
    parser.add_argument("--in-channels", type=positive_int, metavar="N", help="input channels of --model (default: 3)")
    parser.add_argument(
        "--image-size",
        type=positive_int,
        metavar="S",
        help="input side (default: the model's own; required for models that do not record it)",
    )
    parser.add_argument("--batch-sizes", default="1,64", help="comma-separated batch sizes")
    parser.add_argument("--backends", default="torch,onnxruntime", help="torch and/or onnxruntime")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=positive_int, help="timed repetitions per model (default: by batch size)")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (default: usable cores)")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON instead of the table")
    parser.add_argument("--out", help="also write the full result as JSON here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out that tpp did not write")
    return parser


def _batch_sizes(text: str) -> tuple[int, ...]:
    from tpp.errors import ConfigError

    try:
        sizes = tuple(int(b) for b in text.split(","))
    except ValueError:
        raise ConfigError(f"malformed --batch-sizes {text!r}: use e.g. 1,64") from None
    if min(sizes) < 1:
        raise ConfigError(f"--batch-sizes {text!r} holds a batch size below 1; use e.g. 1,64")
    return sizes


def _models(args: argparse.Namespace) -> tuple[Any, Any, Any, str | None]:
    """``(base, pruned, example inputs, ratio text)``: the models to time, both in eval mode."""
    import copy
    import fnmatch
    import warnings

    import torch

    from tpp.cli.export import model_of
    from tpp.cli.loading import allow_imports_from_cwd
    from tpp.cli.recorded_data import recorded_image
    from tpp.errors import ConfigError
    from tpp.models import build_model, example_inputs, model_from_record
    from tpp.pruning.methods.tpp import TPPPruner
    from tpp.pruning.selection import parse_ratio

    torch.manual_seed(0)
    if args.checkpoint:
        if args.ratio is not None:
            raise ConfigError(
                "--ratio prunes a fresh --model; drop it with --checkpoint (its pruned architecture is timed)"
            )
        pruned = model_of(args, need_weights=False)
        record = getattr(pruned, "tpp_spec", None)
        if not record:
            raise ConfigError(f"{args.checkpoint} does not record its unpruned architecture; pass --model SPEC")
        # the architecture before pruning: the record without the plan (its factory, if any, is imported by now)
        base = model_from_record(record)
        recorded = recorded_image(args, getattr(pruned, "tpp_data", None), args.checkpoint)
        inputs = example_inputs(pruned, batch_size=2, image_size=args.image_size or recorded.get("image_size"))
        return base.eval(), pruned.eval(), inputs, None
    spec = args.model or DEFAULT_MODEL
    allow_imports_from_cwd(spec)
    base = build_model(spec, args.num_classes or 10, args.in_channels or 3, image_size=args.image_size).eval()
    inputs = example_inputs(base, batch_size=2, image_size=args.image_size)
    text = args.ratio
    if text is None:
        paper = any(fnmatch.fnmatchcase(name, PAPER_PATTERN) for name, _ in base.named_modules())
        text = f"{PAPER_PATTERN}:0.5" if paper else "0.5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "can lose only k of n channels" notices
        pruned = TPPPruner(copy.deepcopy(base), inputs, ratio=parse_ratio(text), scope=args.scope).prune().eval()
    return base, pruned, inputs, text


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print its table (or, with ``--json``, the result). Returns 0."""
    from tpp.deploy import machine_info
    from tpp.deploy.latency import compare_pruned, latency_table, usable_cores
    from tpp.models import spec_label
    from tpp.util.atomic import atomic_write_json
    from tpp.util.owned import GENERATOR, json_is_ours, refuse_foreign

    batch_sizes = _batch_sizes(args.batch_sizes)
    if args.out:
        refuse_foreign(args.out, json_is_ours, args.overwrite)  # before minutes of timing
    base, pruned, inputs, ratio = _models(args)
    threads = int(args.threads or usable_cores())
    input_shape = tuple(int(s) for s in inputs.shape[1:])
    backends = tuple(b for b in args.backends.split(",") if b)
    rows = compare_pruned(
        base, pruned, input_shape, batch_sizes, args.device, backends, repeats=args.repeats, threads=threads
    )
    params = {"base": sum(p.numel() for p in base.parameters()), "pruned": sum(p.numel() for p in pruned.parameters())}
    result = {
        "model": spec_label(pruned.tpp_spec),
        "checkpoint": args.checkpoint,
        "ratio": ratio,
        "scope": None if args.checkpoint else args.scope,
        "input_shape": list(input_shape),
        "params": params,
        "machine": machine_info(threads, args.device),
        "rows": rows,
    }
    if args.out:
        atomic_write_json(args.out, {"generator": f"{GENERATOR} bench", **result})
    if args.json:
        print(json.dumps(result, default=str))
        return 0
    source = f"pruned file {args.checkpoint}" if args.checkpoint else f"ratio {ratio} (scope {args.scope})"
    machine = result["machine"]
    print(
        f"{result['model']}, {source}: input {'x'.join(map(str, input_shape))}, params {params['base']:,} -> "
        f"{params['pruned']:,}; {threads} thread(s) on {args.device} ({machine['cpu_model']})"
    )
    print("\n".join(latency_table(rows)))
    if args.out:
        print(f"wrote {args.out}")
    return 0
