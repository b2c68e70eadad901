"""``tpp import-official``: an official TPP checkpoint (a pickled model) -> a tpp checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tpp.cli.common import add_command, positive_int
from tpp.errors import ConfigError

DESCRIPTION = """\
Convert a base model released with the official TPP code (github.com/MingSun-Tse/TPP, e.g.
resnet56_cifar10.pth, vgg19_cifar100.pth) into a tpp checkpoint that `tpp eval` and `tpp prune`
accept. The official files are pickled whole models: tpp reads them without running any code
from the file (unknown classes become inert placeholders; a file that would call a function is
refused), maps the weight names onto tpp's architecture, checks every shape and writes OUT
atomically. An existing OUT that tpp did not write is replaced only with --overwrite.

Supported official archs -> tpp models: resnet20/32/56/110 -> resnet20/32/56/110,
resnet{20,32,56,110}_B -> resnet*_b, vgg19_C -> vgg19_bn, mlp_7_linear/mlp_7_relu ->
mlp7_linear/mlp7_relu. Pruned official models cannot be imported.

examples:
  tpp import-official pretrained_ckpts/resnet56_cifar10.pth --model resnet56 --dataset cifar10 --out resnet56.pt
  tpp prune --method tpp --model resnet56 --dataset cifar10 --checkpoint resnet56.pt --ratio '*layer*.conv1:0.9'
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tpp import-official``."""
    parser = add_command(
        subparsers, "import-official", help="import a checkpoint of the official TPP code", description=DESCRIPTION
    )
    parser.add_argument("file", metavar="FILE", help="checkpoint saved by the official code (.pth)")
    parser.add_argument(
        "--model",
        metavar="NAME",
        help="tpp model name, e.g. resnet56, vgg19_bn, mlp7_linear (default: from the arch the file records)",
    )
    parser.add_argument("--num-classes", type=positive_int, metavar="N", help="classes (default: from the file)")
    parser.add_argument("--in-channels", type=positive_int, metavar="N", help="input channels (default: from the file)")
    parser.add_argument(
        "--dataset",
        metavar="NAME",
        help="dataset the model was trained on; recorded so `tpp eval` needs no --dataset (e.g. cifar10)",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="tpp checkpoint to write (.pt)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out that tpp did not write (a tpp checkpoint is replaced anyway)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Import, write ``--out`` and print a one-line summary. Returns 0."""
    from tpp.checkpoints import make_payload, save_checkpoint
    from tpp.models import load_official
    from tpp.util.owned import checkpoint_is_ours, refuse_foreign

    source, out = Path(args.file), Path(args.out)
    if not source.is_file():
        raise ConfigError(f"{source} is not a file; pass the path of the official .pth checkpoint")
    if out.exists() and out.resolve() == source.resolve():
        raise ConfigError(f"--out {out} is the input file; choose another output path")
    refuse_foreign(out, checkpoint_is_ours, args.overwrite)  # before reading a large file
    info = None
    if args.dataset:
        from tpp.data import dataset_info

        info = dataset_info(args.dataset)
    model = load_official(
        source,
        args.model,
        num_classes=args.num_classes or (info.num_classes if info else None),
        in_channels=args.in_channels or (info.in_channels if info else None),
    )
    spec = model.tpp_spec
    fields: dict[str, Any] = {"imported_from": {"file": str(source), "format": "official TPP (MingSun-Tse/TPP)"}}
    if info is not None:
        fields["config"] = {"model": spec["name"], "dataset": info.name}
    path = save_checkpoint(out, make_payload(model, **fields))
    params = sum(p.numel() for p in model.parameters())
    print(
        f"wrote {path}: {spec['name']}, {spec['num_classes']} classes, {spec['in_channels']} input channels, "
        f"{params:,} parameters"
    )
    return 0
