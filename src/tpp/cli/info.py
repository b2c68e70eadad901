"""``tpp info``: per-layer output shapes, parameters, MACs and FLOPs of a model."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tpp.cli.arguments import add_model_args
from tpp.cli.checks import check_model_input, model_name
from tpp.cli.common import add_command, positive_int

DESCRIPTION = """\
Print a per-layer table (name, type, output shape, params, MACs, FLOPs) and the totals of a
model, for one input image. FLOPs = 2 x MACs, as the TPP paper counts (ResNet-56 on CIFAR-10:
0.85M params, 0.25G FLOPs). Counted with Torch-Pruning's rules: conv/linear multiply-adds plus
bias, BatchNorm 2 per element, ReLU/pooling modules 1 per element; functional ops (F.relu,
residual additions) are not counted. Without --model, lists the available models and datasets.

examples:
  tpp info --model resnet56 --dataset cifar10
  tpp info --model vgg19_bn --num-classes 100
  tpp info --checkpoint runs/pruned/best.pt   # input size and classes as the file records
  tpp info --model hf:ResNetForImageClassification --image-size 224 --num-classes 10
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tpp info``."""
    parser = add_command(
        subparsers, "info", help="layer table, parameters and FLOPs of a model", description=DESCRIPTION
    )
    add_model_args(parser, required=False, weights=False)
    parser.add_argument("--dataset", metavar="NAME", help="take classes, channels and image size from this dataset")
    parser.add_argument("--data-dir", metavar="DIR", help="the folder of --dataset imagefolder (its classes)")
    parser.add_argument(
        "--num-classes", type=positive_int, metavar="N", help="output classes (default: checkpoint, dataset or 10)"
    )
    parser.add_argument(
        "--in-channels", type=positive_int, metavar="N", help="input channels (default: checkpoint, dataset or 3)"
    )
    parser.add_argument(
        "--image-size",
        type=positive_int,
        metavar="S",
        help="input side length (default: the model's, 32 or 224; required for models outside tpp)",
    )
    parser.add_argument("--checkpoint", metavar="FILE", help="count this checkpoint's (possibly pruned) model")
    parser.add_argument("--json", action="store_true", help="print the table and totals as JSON")
    parser.add_argument("--config", metavar="FILE", help="YAML file of option values; the command line overrides it")
    return parser


def _int(n: int) -> str:
    return f"{n:,}"


def _print_table(rows: list[dict[str, Any]]) -> None:
    header = ("name", "type", "output shape", "params", "MACs", "FLOPs")
    lines = [
        (
            r["name"],
            r["type"],
            "x".join(str(d) for d in r["output_shape"]) or "-",
            _int(r["params"]),
            _int(r["macs"]),
            _int(r["flops"]),
        )
        for r in rows
    ]
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header))]

    # text columns left-aligned, numbers right-aligned
    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    print(fmt(header))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print(fmt(line))


def _list_available() -> int:
    from tpp.data import DATASETS
    from tpp.models import list_models

    print("models:   " + ", ".join(list_models()))
    print("          and timm:NAME, torchvision:NAME, hf:CLASS_OR_DIR, package.module:function")
    print("datasets: " + ", ".join(DATASETS))
    print("Run `tpp info --model NAME` for a model's layer table and FLOPs.")
    return 0


def run(args: argparse.Namespace) -> int:
    """Print the layer table and totals. Returns 0."""
    if not args.model and not args.checkpoint:
        return _list_available()
    from tpp.checkpoints import load_checkpoint
    from tpp.cli.loading import allow_imports_from_cwd, model_from_checkpoint
    from tpp.cli.recorded_data import recorded_image
    from tpp.data import dataset_info
    from tpp.data.record import recorded_data
    from tpp.metrics.counting import count, human, layer_table
    from tpp.models import build_model, example_inputs, spec_label

    payload = load_checkpoint(args.checkpoint) if args.checkpoint else {}
    record = recorded_image(args, recorded_data(payload, args.checkpoint), args.checkpoint)
    info = dataset_info(args.dataset, args.data_dir) if args.dataset else None
    num_classes = args.num_classes or (info.num_classes if info else None) or record.get("num_classes")
    in_channels = args.in_channels or (info.in_channels if info else None) or record.get("channels")
    if args.checkpoint:
        model = model_from_checkpoint(
            args.checkpoint, payload, model_name=args.model, num_classes=num_classes, in_channels=in_channels
        )
    else:
        allow_imports_from_cwd(args.model)
        model = build_model(args.model, num_classes=num_classes or 10, in_channels=in_channels or 3)
    spec = model.tpp_spec
    size = (
        args.image_size
        or (info.image_size if info else None)
        or record.get("image_size")
        or example_inputs(model).shape[-1]
    )
    check_model_input(
        model,
        (1, int(spec.get("in_channels", 3)), size, size),
        model_name(model),
        "pass an --image-size the model takes" if args.image_size else "pass --image-size",
    )
    inputs = example_inputs(model, image_size=size)
    rows = layer_table(model, inputs)
    totals = count(model, inputs)
    if args.json:
        print(
            json.dumps(
                {"model": spec, "input_shape": list(inputs.shape), "layers": rows, "totals": totals.as_dict()},
                default=list,
            )
        )
        return 0
    print(f"{spec_label(spec)}: input {list(inputs.shape)}, {spec.get('num_classes')} classes")
    _print_table(rows)
    print(f"(totals count conv and linear layers, as the paper does; all rows above: {_int(totals.all_macs)} MACs)")
    print(
        f"total: params {human(totals.params)} ({_int(totals.params)}), MACs {human(totals.macs)} "
        f"({_int(totals.macs)}), FLOPs {human(totals.flops)} ({_int(totals.flops)}; FLOPs = 2 x MACs)"
    )
    return 0
