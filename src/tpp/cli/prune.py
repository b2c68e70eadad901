"""``tpp prune``: regularise (TPP and other regularised methods), remove channels, fine-tune.

Multi-GPU (one node, 4 GPUs; see :mod:`tpp.distributed`)::

    torchrun --nproc_per_node 4 -m tpp prune --method tpp --model resnet56 --dataset cifar10 \
        --checkpoint base.pt --ratio '*layer*.conv1:0.5' --batch-size 128 --amp bf16 --out runs/r56

``--batch-size`` is the global batch (32 per GPU here). Every rank prunes the same filters, only
rank 0 writes ``--out``, and ``--resume`` makes every rank continue from the same files.

The options and help text: :mod:`tpp.cli.prune_args`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from tpp.cli.checks import lr_schedule_option, model_name, refuse_saved_factory, resume_or_overwrite
from tpp.cli.common import launch, require, resolved_config, run_label, speed_options
from tpp.cli.job_setup import job_options, prepare_model_and_data
from tpp.cli.method_options import method_options
from tpp.cli.prune_args import add_parser
from tpp.cli.prune_resume import finished_job
from tpp.cli.prune_summary import dry_run_text, summary_line
from tpp.cli.text_options import text_settings
from tpp.errors import ConfigError

# the command's interface (tpp.cli.main): the parser lives in tpp.cli.prune_args
__all__ = ["add_parser", "check_options", "run"]


def run(args: argparse.Namespace) -> int:
    """Run the three stages and print a summary (rank 0). Returns 0."""
    check_options(args)
    if args.resume and args.out:
        finished = finished_job(args)
        if finished is not None:
            from tpp.util.lock import FolderLock

            with FolderLock(args.out):  # refused while another tpp writes there; clears a killed run's lock file
                print(finished)
            return 0
    return launch(args, _prune)


def check_options(args: argparse.Namespace) -> None:
    """Every check that needs no file: run before anything is loaded, so that no hour of
    regularisation is lost to a bad option found at the end.

    Raises:
        ConfigError: a missing option, options that contradict each other, or a malformed ratio
            or LR schedule (each message names the flag).
    """
    from tpp.cli.loading import require_trained_model
    from tpp.pruning.selection import parse_ratio

    refuse_saved_factory(args)
    nothing_saved = not (Path(args.out) / "config.json").is_file() if args.out else True
    if args.resume and args.out and not (args.checkpoint or args.model) and nothing_saved:
        raise ConfigError(
            f"--resume: {args.out} holds no job to continue (no config.json); start the job without "
            "--resume, with its options"
        )
    if not args.checkpoint:  # a tpp checkpoint records both
        require(args, "model", "dataset")
    require_trained_model(args)
    method_options(args, args.method)  # an option of another method is an error now, not after training
    amounts = [
        flag
        for flag, dest in (
            ("--ratio", "ratio"),
            ("--global-ratio", "global_ratio"),
            ("--speedup", "speedup"),
            ("--target-flops", "target_flops"),
        )
        if getattr(args, dest) is not None
    ]
    searches = [flag for flag in amounts if flag in ("--speedup", "--target-flops")]
    if not amounts:
        raise ConfigError("give --ratio (e.g. 0.5 or '*layer*.conv1:0.5'), --global-ratio, --speedup or --target-flops")
    if len(searches) > 1 or ("--global-ratio" in amounts and len(amounts) > 1):
        raise ConfigError(f"{amounts[0]} and {amounts[1]} both set how much to prune; give one of them")
    if args.ratio is not None:
        pattern = "{ratio}" in args.ratio
        if searches and not pattern:
            raise ConfigError(
                f"--ratio {args.ratio} and {searches[0]} both set how much to prune; give one of them, or a --ratio "
                f"pattern with {{ratio}} (e.g. '*layer*.conv1:{{ratio}}') for {searches[0]} to fill in"
            )
        if pattern and not searches:
            raise ConfigError(
                f"--ratio {args.ratio} has a {{ratio}} placeholder: add --speedup or --target-flops "
                "to fill it in, or write the ratio itself"
            )
        try:
            parse_ratio(args.ratio.replace("{ratio}", "0.5"))
        except ConfigError as error:
            raise ConfigError(f"--ratio: {error}") from None
    if args.speedup is not None and args.speedup < 1:
        raise ConfigError(f"--speedup {args.speedup:g} is below 1x; pass the FLOPs speedup to reach, e.g. 2.0")
    lr_schedule_option(args.ft_lr, "--ft-lr")
    if args.budget_steps is not None and "--ft-epochs" in (getattr(args, "_argv", None) or []):
        raise ConfigError(
            "--budget-steps sets the fine-tuning length (what the regularisation leaves of it); drop --ft-epochs"
        )
    resume_or_overwrite(args, "job")


def _prune(args: argparse.Namespace, dist_context: Any) -> int:
    from functools import partial

    from tpp import distributed, training
    from tpp.checkpoints import load_checkpoint
    from tpp.jobs import JobContext, PruneJobConfig, run_prune_job
    from tpp.pruning.selection import parse_ratio

    searching = args.speedup is not None or args.target_flops is not None
    ratio = parse_ratio(args.ratio) if args.ratio is not None and not searching else None
    device, main = dist_context.device, dist_context.is_main
    payload = load_checkpoint(args.checkpoint) if args.checkpoint else None
    out = Path()

    def name_run(model: Any) -> None:
        nonlocal out
        args.model = args.model or model_name(model)  # recorded in config.json, so that a resume needs no --model
        out = (
            Path(args.out)
            if args.out
            else Path("runs") / f"prune-{args.method}-{run_label(args.model)}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        out = Path(distributed.broadcast_object(str(out)))  # ranks may disagree on the time stamp
        args.out = str(out)  # an interruption names the folder to resume

    prepared = prepare_model_and_data(
        args, payload, device, **job_options(args, dist_context), need_weights=True, want_inputs=True, on_model=name_run
    )
    model, info, data, text, inputs = prepared.model, prepared.info, prepared.data, prepared.text, prepared.inputs
    args.dataset = info.name
    train_loader, test_loader = prepared.train_loader, prepared.test_loader
    if searching:
        ratio = _search_ratio(args, model, inputs, dist_context.is_main and not args.quiet)
    job = PruneJobConfig(
        method=args.method,
        ratio=ratio,
        global_ratio=args.global_ratio,
        scope=args.scope,
        pruner_options={**_method_options(args), "ignored_layers": args.ignore or None},
        prune_lr=args.prune_lr,
        ft_epochs=args.ft_epochs,
        ft_lr=args.ft_lr,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
        jsv_batches=args.jsv_batches,
        jsv_every_epoch=args.jsv_every_epoch,
        jsv_mode=args.jsv_mode,
        importance=args.importance,
        calibration_batches=args.calibration_batches,
        heads=args.heads,
        budget_steps=args.budget_steps,
    )
    if args.dry_run:
        return _dry_run(args, model, inputs, job, (train_loader, test_loader), out, main)
    prepare = partial(
        distributed.prepare, context=dist_context, channels_last=bool(getattr(args, "channels_last", False))
    )
    model = prepare(model)
    config = resolved_config(
        args,
        command="prune",
        dataset=info.name,
        device=str(device),
        out=str(out),
        data_dir=data.get("data_dir"),  # also when the checkpoint's record gave it
        world_size=dist_context.world_size,
        **(text_settings(data) if text else {}),
    )

    def create_run_dir() -> Any:
        run_dir = training.RunDirectory(out, resume=args.resume, overwrite=args.overwrite)
        run_dir.write_config(config)
        run_dir.write_meta(
            command="prune",
            seed=args.seed,
            device=str(device),
            device_name=training.device_name(device),
            world_size=dist_context.world_size,
        )
        return run_dir

    run_dir = distributed.run_on_main(dist_context, create_run_dir)  # the other ranks never touch --out
    context = JobContext(
        out=out,
        resume=args.resume,
        quiet=args.quiet,
        rank=dist_context.rank,
        loggers=[run_dir] if run_dir is not None else [],
        speed=speed_options(args),
        prepare=prepare,
    )
    try:
        _, report = run_prune_job(model, train_loader, test_loader, inputs, job, context)
    finally:
        if run_dir is not None:
            run_dir.close()
    if main:
        print(summary_line(args.method, report, out))
    return 0


def _method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The method's options given on the command line, with ``--fast``'s shorter schedule applied."""
    options = method_options(args, args.method)
    if not args.fast:
        return options
    from tpp.pruning.presets import fast_options

    return fast_options(args.method, options)


def _dry_run(args: argparse.Namespace, model: Any, inputs: Any, job: Any, loaders: tuple, out: Path, main: bool) -> int:
    """Everything up to the first training step, then the plan and what it would cost; nothing is written."""
    from tpp.jobs import preview_prune_job
    from tpp.jobs.preview import measure_step_seconds
    from tpp.training import RunDirectory

    for loader in loaders:  # the data can be read: one batch of each split
        next(iter(loader))
    RunDirectory.check(out, resume=args.resume, overwrite=args.overwrite)
    plan = preview_prune_job(model, inputs, job)
    step = measure_step_seconds(model, loaders[0])
    if main:
        print(dry_run_text(args, plan, len(loaders[0]), step, out))
    return 0


def _search_ratio(args: argparse.Namespace, model: Any, inputs: Any, verbose: bool) -> Any:
    """The ratio (or filled-in pattern) that meets --speedup / --target-flops, found by counting."""
    from tpp.pruning.selection import parse_ratio
    from tpp.pruning.target import find_ratio_for_flops, find_ratio_for_speedup

    pattern = args.ratio if args.ratio and "{ratio}" in args.ratio else None
    options = dict(scope=args.scope, pattern=pattern, ignored_layers=args.ignore or None)
    if args.speedup:
        found, achieved = find_ratio_for_speedup(model, inputs, args.speedup, **options)
        what = f"{achieved:.3f}x FLOPs speedup"
    else:
        found, achieved = find_ratio_for_flops(model, inputs, args.target_flops, **options)
        what = f"{achieved:.4g} FLOPs per image"
    if verbose:
        print(f"ratio {found:.4g} gives {what}")
    return parse_ratio(pattern.replace("{ratio}", f"{found:g}")) if pattern else found
