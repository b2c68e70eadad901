"""``tpp eval``: test-set accuracy and loss of a checkpoint."""

from __future__ import annotations

import argparse
from typing import Any

from tpp.cli.arguments import add_data_args, add_model_args, add_runtime_args
from tpp.cli.common import add_command
from tpp.cli.job_setup import prepare_model_and_data
from tpp.errors import CheckpointError

DESCRIPTION = """\
Evaluate a checkpoint (from `tpp train`, a pruned model, or a raw state_dict) on a test set and
print top-1, top-5 and the mean cross-entropy. The model and the data (dataset, image size,
channels, normalisation) default to those recorded in the checkpoint; a flag that contradicts
them is refused.

examples:
  tpp eval --checkpoint runs/mlp/best.pt --data-dir ../shared/data
  tpp eval --checkpoint resnet56_state_dict.pt --model resnet56 --dataset cifar10
  tpp eval --model hf:ResNetForImageClassification --weights resnet.safetensors --dataset imagefolder --data-dir photos
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tpp eval``."""
    parser = add_command(subparsers, "eval", help="evaluate a checkpoint on a test set", description=DESCRIPTION)
    parser.add_argument("--checkpoint", metavar="FILE", help="checkpoint to evaluate (or --model with --weights)")
    add_model_args(parser, required=False)
    add_data_args(parser, train=False)
    add_runtime_args(parser, out=False)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print ``top-1 / top-5 / loss`` of the checkpoint. Returns 0."""
    from tpp.cli.loading import require_trained_model

    require_trained_model(args)
    from tpp.checkpoints import load_checkpoint
    from tpp.checkpoints.format import non_finite_weight
    from tpp.training import evaluate, resolve_device

    device = resolve_device(args.device)
    payload = load_checkpoint(args.checkpoint) if args.checkpoint else {}

    def refuse_non_finite(model: Any) -> None:
        broken = non_finite_weight(model)
        if broken:  # its loss would print as nan and its accuracy as chance, without a word why
            raise CheckpointError(
                f"{args.checkpoint or args.weights or args.model} holds non-finite weights (NaN or infinity in "
                f"{broken}): the run that saved it diverged; evaluate an earlier checkpoint, or train again with a "
                "lower --lr"
            )

    prepared = prepare_model_and_data(args, payload, device, num_workers=args.num_workers, on_model=refuse_non_finite)
    info, data, text = prepared.info, prepared.data, prepared.text
    result = evaluate(prepared.model, prepared.test_loader, device)
    if text:
        bpb = f"  bits/byte {result['bits_per_byte']:.4f}" if "bits_per_byte" in result else ""
        print(
            f"{args.checkpoint or args.weights or args.model}: perplexity {result['perplexity']:.3f}{bpb}  "
            f"next-token top-1 {result['top1']:.2f}%  ({result['samples']} tokens of {info.name} "
            f"{data['eval_split']}.txt in windows of {data['seq_len']})"
        )
        return 0
    print(
        f"{args.checkpoint or args.weights or args.model}: top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  "
        f"loss {result['loss']:.4f}  ({result['samples']} {info.name} "
        f"{'validation' if data.get('eval_split') == 'valid' else 'test'} images)"
    )
    return 0
