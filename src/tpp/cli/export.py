"""``tpp export``: a pruned model to ONNX (verified against PyTorch when onnxruntime is present) or to a
Hugging Face ``from_pretrained`` folder."""

from __future__ import annotations

import argparse
from typing import Any

from tpp.cli.common import add_command, output_path, positive_int

DESCRIPTION = """\
Export a model saved by `tpp prune` (pruned_model.pt, tpp.save_pruned format) to ONNX, or a pruned
transformers model to a folder that transformers' from_pretrained loads without tpp (--format hf:
config.json with the pruned widths, safetensors weights, the source folder's tokenizer files). Files
are written atomically (a folder is built beside --out, then renamed) and checked: ONNX against
PyTorch when onnxruntime is installed (pip install 'tpp-pruning[onnx]'), the folder by loading it.

examples:
  tpp export --format onnx --checkpoint runs/job/pruned_model.pt --out resnet56_pruned.onnx
  tpp export --format hf --checkpoint llama_pruned.pt --out llama-pruned/
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tpp export``."""
    parser = add_command(subparsers, "export", help="export a pruned model (ONNX or Hugging Face folder)",
                         description=DESCRIPTION)
    parser.add_argument("--format", default="onnx", choices=("onnx", "hf"),
                        help="onnx: one .onnx file; hf: a from_pretrained folder (transformers models)")
    parser.add_argument("--checkpoint", required=True, help="pruned model file (tpp.save_pruned format)")
    parser.add_argument("--out", required=True, type=output_path, help="output .onnx file, or folder for --format hf")
    parser.add_argument("--opset", type=positive_int, default=None,
                        help="ONNX opset version (what torch's exporter writes: 7 to 20 on torch 2.x; default 17)")
    parser.add_argument("--static-batch", action="store_true", help="fix the batch dimension instead of a dynamic one")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out that tpp did not write")
    parser.add_argument("--model", metavar="SPEC",
                        help="the model spec the file records, when it is a module:function factory: tpp imports "
                             "that code only on your word, not on the file's")
    return parser


def run(args: argparse.Namespace) -> int:
    """Export and print the output path. Returns 0."""
    from tpp.cli.loading import allow_imports_from_cwd
    from tpp.errors import ConfigError

    if args.format == "hf" and (args.opset is not None or args.static_batch):
        raise ConfigError("--opset and --static-batch are ONNX options; drop them with --format hf")
    if args.model:
        allow_imports_from_cwd(args.model)
    if args.format == "hf":
        from tpp.deploy import export_pruned_hf

        path = export_pruned_hf(args.checkpoint, args.out, overwrite=args.overwrite, base_model=args.model)
    else:
        from tpp.deploy import export_pruned_onnx

        path = export_pruned_onnx(args.checkpoint, args.out, opset=17 if args.opset is None else args.opset,
                                  dynamic_batch=not args.static_batch, overwrite=args.overwrite,
                                  base_model=args.model)
    print(f"wrote {path}")
    return 0
