"""``tpp export``: a pruned model to ONNX (verified against PyTorch when onnxruntime is present) or to a
Hugging Face ``from_pretrained`` folder."""

from __future__ import annotations

import argparse
from typing import Any

from tpp.cli.arguments import add_model_args
from tpp.cli.common import add_command, output_path, positive_int

DESCRIPTION = """\
Export a model to ONNX, or a pruned transformers model to a folder that transformers'
from_pretrained loads without tpp (--format hf: config.json with the pruned widths, safetensors
weights, the source folder's tokenizer files). The model is --checkpoint (a pruned_model.pt of
`tpp prune`, any tpp checkpoint, or a plain state_dict with --model) or --model built from
--weights/--pretrained. Files are written atomically (a folder is built beside --out, then
renamed) and checked: ONNX against PyTorch when onnxruntime is installed (pip install
'tpp-pruning[onnx]'), the folder by loading it.

A file that names a package.module:function factory is rebuilt with it only when you name the same
spec with --model: reading a file never imports code you did not name.

examples:
  tpp export --format onnx --checkpoint runs/job/pruned_model.pt --out resnet56_pruned.onnx
  tpp export --checkpoint runs/mine/pruned_model.pt --model mymodels:res_cnn --out res_cnn.onnx
  tpp export --model mymodels:res_cnn --weights w.pt --num-classes 5 --image-size 64 --out res_cnn.onnx
  tpp export --format hf --checkpoint llama_pruned.pt --out llama-pruned/
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tpp export``."""
    parser = add_command(
        subparsers, "export", help="export a pruned model (ONNX or Hugging Face folder)", description=DESCRIPTION
    )
    parser.add_argument(
        "--format",
        default="onnx",
        choices=("onnx", "hf"),
        help="onnx: one .onnx file; hf: a from_pretrained folder (transformers models)",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="the model: a pruned model file (tpp.save_pruned), any tpp checkpoint, or a plain "
        "state_dict (with --model)",
    )
    add_model_args(parser, required=False)
    parser.add_argument("--out", required=True, type=output_path, help="output .onnx file, or folder for --format hf")
    parser.add_argument(
        "--num-classes",
        type=positive_int,
        metavar="N",
        help="output classes of a --model built here (default: the checkpoint's, else 10)",
    )
    parser.add_argument(
        "--in-channels",
        type=positive_int,
        metavar="N",
        help="input channels of a --model built here (default: the checkpoint's, else 3)",
    )
    parser.add_argument(
        "--image-size",
        type=positive_int,
        metavar="S",
        help="side of the example input traced into the ONNX file (default: the model's own)",
    )
    parser.add_argument(
        "--opset",
        type=positive_int,
        default=None,
        help="ONNX opset version (what torch's exporter writes: 7 to 20 on torch 2.x; default 17)",
    )
    parser.add_argument("--static-batch", action="store_true", help="fix the batch dimension instead of a dynamic one")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out that tpp did not write")
    return parser


def run(args: argparse.Namespace) -> int:
    """Export and print the output path. Returns 0."""
    from tpp.cli.loading import allow_imports_from_cwd
    from tpp.errors import ConfigError

    if args.format == "hf" and (args.opset is not None or args.static_batch or args.image_size):
        raise ConfigError("--opset, --static-batch and --image-size are ONNX options; drop them with --format hf")
    if not args.checkpoint and not args.model:
        raise ConfigError("--checkpoint FILE or --model SPEC is required: the model to export")
    if args.model:
        allow_imports_from_cwd(args.model)
    if args.format == "hf":
        path = _export_hf(args)
    else:
        path = _export_onnx(args)
    print(f"wrote {path}")
    return 0


def _export_hf(args: argparse.Namespace) -> Any:
    from tpp.deploy import export_pruned_hf, save_pretrained
    from tpp.errors import CheckpointError

    if args.checkpoint and not (args.weights or args.pretrained):
        try:  # the destination is checked before a (large) checkpoint is read
            return export_pruned_hf(args.checkpoint, args.out, overwrite=args.overwrite, base_model=args.model)
        except CheckpointError as error:
            model = _plain_checkpoint_model(args, error)
    else:
        model = model_of(args)
    return save_pretrained(model, args.out, overwrite=args.overwrite)


def _export_onnx(args: argparse.Namespace) -> Any:
    from tpp.cli.recorded_data import recorded_image
    from tpp.deploy.export import ExportError, check_opset, export_onnx, onnx_is_ours
    from tpp.errors import CheckpointError
    from tpp.models import example_inputs
    from tpp.util.owned import refuse_foreign

    opset = 17 if args.opset is None else args.opset
    check_opset(opset)  # before the checkpoint is read
    try:
        refuse_foreign(args.out, onnx_is_ours, args.overwrite)
    except CheckpointError as error:
        raise ExportError(str(error)) from None
    model = model_of(args)
    recorded = recorded_image(args, getattr(model, "tpp_data", None), args.checkpoint)  # refuses another size
    size = args.image_size or recorded.get("image_size")
    inputs = example_inputs(model, batch_size=1, image_size=size)
    return export_onnx(
        model, inputs, args.out, opset=opset, dynamic_batch=not args.static_batch, overwrite=args.overwrite
    )


def model_of(args: argparse.Namespace, need_weights: bool = True) -> Any:
    """The model of ``--checkpoint`` (a tpp model file, rebuilt as :func:`tpp.load_pruned` does with
    ``--model`` as its base model; or a plain state_dict of ``--model``), else ``--model`` built
    with ``--weights``/``--pretrained`` (required when ``need_weights``). ``--num-classes``,
    ``--in-channels`` and ``--image-size`` (where ``args`` has them) shape a model built here.

    Raises:
        ConfigError: neither a checkpoint nor (with ``need_weights``) weights for ``--model``.
        CheckpointError: an unreadable file, weights of another architecture, or a factory the file
            alone names (the fix: ``--model`` with the same spec).
    """
    from tpp.checkpoints import load_pruned
    from tpp.cli.loading import allow_imports_from_cwd, model_from_args
    from tpp.errors import CheckpointError

    if args.model:
        allow_imports_from_cwd(args.model)
    if args.checkpoint and not (getattr(args, "weights", None) or getattr(args, "pretrained", False)):
        try:
            return load_pruned(args.checkpoint, args.model)
        except CheckpointError as error:
            return _plain_checkpoint_model(args, error)
    return model_from_args(
        args,
        num_classes=getattr(args, "num_classes", None) or 10,
        in_channels=getattr(args, "in_channels", None) or 3,
        image_size=getattr(args, "image_size", None),
        need_weights=need_weights,
    )


def _plain_checkpoint_model(args: argparse.Namespace, error: Exception) -> Any:
    """The model of a checkpoint that is not a tpp model file (a plain state_dict): built from
    ``--model``, as the other commands do. Any other failure of a tpp file is ``error`` again."""
    from tpp.checkpoints import FORMAT, load_checkpoint, normalise
    from tpp.cli.loading import model_from_checkpoint
    from tpp.errors import CheckpointError

    try:
        payload = load_checkpoint(args.checkpoint)
    except CheckpointError:
        raise error from None  # unreadable: the first message says why
    if normalise(payload).get("format") == FORMAT:
        raise error  # a tpp file that does not load: not a question of which architecture
    if not args.model:
        raise CheckpointError(
            f"{args.checkpoint} holds weights without a record of their architecture; "
            "pass --model SPEC (the model they belong to)"
        ) from None
    return model_from_checkpoint(
        args.checkpoint,
        payload,
        model_name=args.model,
        num_classes=getattr(args, "num_classes", None),
        in_channels=getattr(args, "in_channels", None),
        image_size=getattr(args, "image_size", None),
    )
