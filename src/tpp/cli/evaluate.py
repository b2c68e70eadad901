"""``tpp eval``: test-set accuracy and loss of a checkpoint."""

from __future__ import annotations

import argparse
from typing import Any

from tpp.cli.arguments import add_data_args, add_model_args, add_runtime_args
from tpp.cli.checks import check_language_model, check_model_input, input_fix, model_name
from tpp.cli.common import TEXT_DATASETS, add_command
from tpp.cli.recorded_data import recorded_dataset
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
    from tpp.cli.loading import model_from_args, require_trained_model

    require_trained_model(args)
    from tpp.checkpoints import load_checkpoint
    from tpp.checkpoints.format import non_finite_weight
    from tpp.data import build_loaders
    from tpp.training import evaluate, resolve_device, seed_everything

    device = resolve_device(args.device)
    payload = load_checkpoint(args.checkpoint) if args.checkpoint else {}
    info, data = recorded_dataset(args, payload, args.checkpoint or args.weights or args.model)
    text = info.name in TEXT_DATASETS
    seed_everything(args.seed)
    model = model_from_args(
        args,
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        image_size=info.image_size,
        payload=payload or None,
    )
    broken = non_finite_weight(model)
    if broken:  # its loss would print as nan and its accuracy as chance, without a word why
        raise CheckpointError(
            f"{args.checkpoint or args.weights or args.model} holds non-finite weights (NaN or infinity in {broken}): "
            "the run that saved it diverged; evaluate an earlier checkpoint, or train again with a lower --lr"
        )
    if not text:
        check_model_input(
            model, (1, info.in_channels, info.image_size, info.image_size), model_name(model), input_fix(info)
        )
    model = model.to(device)
    _, test_loader, info = build_loaders(
        info.name,
        **data,
        test_batch_size=args.test_batch_size,
        device=device,
        download=args.download,
        seed=args.seed,
        num_workers=args.num_workers,
    )
    if text:
        check_language_model(model, next(iter(test_loader))[0][:2].to(device), info)
    result = evaluate(model, test_loader, device)
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
