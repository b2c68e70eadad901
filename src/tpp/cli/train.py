"""``tpp train``: train a model from scratch (or resume a run) with the paper's SGD recipe.

Multi-process: ``torchrun --nproc_per_node 4 -m tpp train --model resnet56 --dataset cifar10
--batch-size 128 --amp bf16 --out runs/r56-base`` trains with DistributedDataParallel (see
:mod:`tpp.distributed`): ``--batch-size`` is the global batch, only rank 0 writes ``--out``, and
``--resume`` makes every rank continue from the same ``last.pt``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tpp.cli.arguments import add_data_args, add_model_args, add_runtime_args, add_speed_args, add_train_args
from tpp.cli.checks import lr_schedule_option, refuse_saved_factory, resume_or_overwrite
from tpp.cli.common import TEXT_DATASETS, add_command, launch, require, resolved_config, run_label, speed_options
from tpp.cli.job_setup import job_options, prepare_model_and_data
from tpp.cli.text_options import text_settings
from tpp.errors import ConfigError

DESCRIPTION = """\
Train a model with SGD (momentum, weight decay) and a per-epoch LR schedule, evaluating on the
test set after every epoch. The run directory receives config.json, meta.json, metrics.jsonl,
last.pt (every epoch) and best.pt (best test top-1).

examples:
  tpp train --model mlp7_linear --dataset mnist --data-dir ../shared/data --epochs 10 --out runs/mlp
  tpp train --model resnet56 --dataset cifar10 --lr 0:0.1,100:0.01,150:0.001 --epochs 200
  tpp train --out runs/mlp --resume --model mlp7_linear --dataset mnist --epochs 20
  tpp train --model mymodels:small_cnn --dataset imagefolder --data-dir photos --image-size 64 --epochs 30
  tpp train --model timm:resnet18 --pretrained --dataset imagefolder --data-dir photos --epochs 10
  torchrun --nproc_per_node 4 -m tpp train --model resnet56 --dataset cifar10 --batch-size 128 --amp bf16
"""

# options whose change would make a resumed run differ from the original one
_RESUME_MUST_MATCH = ("model", "dataset", "seed", "batch_size", "train_subset", "image_size", "channels", "val_split")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tpp train``."""
    parser = add_command(subparsers, "train", help="train a model (from scratch or --resume)", description=DESCRIPTION)
    add_model_args(parser)
    add_data_args(parser, train=True)
    add_train_args(parser)
    add_runtime_args(parser, out=True)
    add_speed_args(parser)
    group = parser.add_argument_group("run directory")
    group.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    group.add_argument("--overwrite", action="store_true", help="reuse a non-empty --out, replacing tpp's files there")
    group.add_argument("--tensorboard", action="store_true", help="also log to TensorBoard in <out>/tb (if installed)")
    return parser


def _check_resume_matches(payload: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    saved = payload.get("config") or {}
    for key in _RESUME_MUST_MATCH:
        if key in saved and saved[key] != config.get(key):
            flag = "--" + key.replace("_", "-")
            raise ConfigError(
                f"{path} was trained with {flag} {saved[key]}, not {config.get(key)}; resume with the same {flag}"
            )


def _check_is_training_run(out: Path) -> None:
    """--resume of a folder without last.pt starts over, but not in another command's folder."""
    import json

    try:
        command = json.loads((out / "config.json").read_text(encoding="utf-8")).get("command")
    except (OSError, ValueError, AttributeError):
        return
    if command not in (None, "train"):
        raise ConfigError(
            f"--resume given but {out} holds a `tpp {command}` run, not a training run; "
            "pass the --out of a tpp train run"
        )


def run(args: argparse.Namespace) -> int:
    """Train; prints a final one-line summary (rank 0). Returns 0."""
    refuse_saved_factory(args)
    require(args, "model", "dataset")
    lr_schedule_option(args.lr, "--lr")
    resume_or_overwrite(args, "run")
    return launch(args, _train)


def _train(args: argparse.Namespace, context: Any) -> int:
    from tpp import distributed, training
    from tpp.checkpoints import load_checkpoint
    from tpp.jobs import JobContext, TrainJobConfig, run_train_job

    schedule = training.parse_lr_schedule(args.lr)
    device, main = context.device, context.is_main
    out, last = Path(), Path()
    config: dict[str, Any] = {}
    payload: dict[str, Any] | None = None

    def read_resume(info: Any, data: dict[str, Any]) -> None:
        """The run folder, the resolved options and (--resume) last.pt, once the model is known to be fine."""
        nonlocal out, config, last, payload
        out = (
            Path(args.out)
            if args.out
            else Path("runs") / f"{run_label(args.model)}-{info.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        out = Path(distributed.broadcast_object(str(out)))  # ranks may disagree on the time stamp
        config = resolved_config(
            args,
            command="train",
            dataset=info.name,
            lr=schedule.text,
            device=str(device),
            out=str(out),
            world_size=context.world_size,
            **(text_settings(data) if info.name in TEXT_DATASETS else {}),
        )
        # read last.pt before the data: a damaged or mismatched file is refused in a second
        last = out / training.RunDirectory.LAST
        if args.resume and distributed.broadcast_object(last.is_file()):  # every rank reads the same last.pt
            payload = load_checkpoint(last)
            _check_resume_matches(payload, config, last)
        elif args.resume:
            _check_is_training_run(out)

    prepared = prepare_model_and_data(
        args, None, device, **job_options(args, context), label=args.model, check_outputs=True, before_data=read_resume
    )
    model, info, train_loader, test_loader = prepared.model, prepared.info, prepared.train_loader, prepared.test_loader
    model = distributed.prepare(model, context, channels_last=getattr(args, "channels_last", False))
    # the run folder is touched only once model and data are known to be fine, and by rank 0 only
    run_dir = distributed.run_on_main(
        context, lambda: training.RunDirectory(out, resume=args.resume, overwrite=args.overwrite)
    )
    loggers: list[Any] = [run_dir] if run_dir is not None else []
    if args.tensorboard and main:
        board, note = training.open_tensorboard(out / "tb")
        if board is not None:
            loggers.append(board)
        elif not args.quiet:
            print(note)

    def on_start(done: int) -> None:
        if payload is not None and main and not args.quiet:
            print(f"resuming {out} after epoch {done} of {args.epochs}")
        elif args.resume and main and not args.quiet:
            print(f"nothing to resume in {out} (no epoch had finished); starting from epoch 1")
        if run_dir is not None:
            run_dir.write_config(config)
            run_dir.write_meta(
                argv=getattr(args, "_argv", None) or sys.argv,
                command="train",
                seed=args.seed,
                device=str(device),
                device_name=training.device_name(device),
                world_size=context.world_size,
            )

    job = TrainJobConfig(args.epochs, args.lr, args.momentum, args.weight_decay)
    job_context = JobContext(
        out=out, resume=args.resume, quiet=args.quiet, rank=context.rank, loggers=loggers, speed=speed_options(args)
    )
    started = time.perf_counter()
    try:
        result = run_train_job(
            model,
            train_loader,
            test_loader,
            job,
            job_context,
            device=device,
            run_config=config,
            resume_from=(last, payload) if payload is not None else None,
            on_start=on_start,
        )
    finally:
        for logger in loggers:
            logger.close()
    best = "n/a" if result.best_top1 is None else f"{result.best_top1:.2f}%"
    last_top1 = "n/a" if result.last_top1 is None else f"{result.last_top1:.2f}%"
    perplexity = result.history[-1].get("test_perplexity") if result.history else None
    if main and perplexity is not None:
        print(
            f"{args.model} on {info.name}: test perplexity {perplexity:.3f} after {result.epochs_completed} epochs "
            f"({time.perf_counter() - started:.0f}s); run directory {out}"
        )
    elif main:
        print(
            f"{args.model} on {info.name}: best top-1 {best}, last top-1 {last_top1} after {result.epochs_completed} "
            f"epochs ({time.perf_counter() - started:.0f}s); run directory {out}"
        )
    return 0
