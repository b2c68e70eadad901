"""``tpp export``: a pruned model to ONNX, verified against PyTorch when onnxruntime is present."""

from __future__ import annotations

import argparse
from typing import Any

from tpp.cli.common import add_command, output_path, positive_int

DESCRIPTION = """\
Export a model saved by `tpp prune` (pruned_model.pt, tpp.save_pruned format) to ONNX. The file is
written atomically and, when onnxruntime is installed (pip install 'tpp-pruning[onnx]'), checked to
reproduce PyTorch's outputs.

example:
  tpp export --format onnx --checkpoint runs/job/pruned_model.pt --out resnet56_pruned.onnx
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tpp export``."""
    parser = add_command(subparsers, "export", help="export a pruned model (ONNX)", description=DESCRIPTION)
    parser.add_argument("--format", default="onnx", choices=("onnx",), help="output format")
    parser.add_argument("--checkpoint", required=True, help="pruned model file (tpp.save_pruned format)")
    parser.add_argument("--out", required=True, type=output_path, help="output .onnx file")
    parser.add_argument("--opset", type=positive_int, default=17,
                        help="ONNX opset version (what torch's exporter writes: 7 to 20 on torch 2.x)")
    parser.add_argument("--static-batch", action="store_true", help="fix the batch dimension instead of a dynamic one")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out that tpp did not write")
    parser.add_argument("--model", metavar="SPEC",
                        help="the model spec the file records, when it is a module:function factory: tpp imports "
                             "that code only on your word, not on the file's")
    return parser


def run(args: argparse.Namespace) -> int:
    """Export and print the output path. Returns 0."""
    from tpp.cli.loading import allow_imports_from_cwd
    from tpp.deploy import export_pruned_onnx

    if args.model:
        allow_imports_from_cwd(args.model)
    path = export_pruned_onnx(args.checkpoint, args.out, opset=args.opset, dynamic_batch=not args.static_batch,
                              overwrite=args.overwrite, base_model=args.model)
    print(f"wrote {path}")
    return 0
