"""The two training stages of a pruning job (:mod:`tpp.jobs.prune_job`): regularisation with the
pruner's hooks at a constant LR until it is done, and fine-tuning of the pruned model with a fresh
optimizer. Each checkpoints into its own folder, so a killed job resumes inside the stage."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch.nn as nn

from tpp.checkpoints import load_checkpoint
from tpp.distributed import broadcast_object
from tpp.jobs.job_outputs import StageLogger, stage_history
from tpp.jobs.measures import measure_jsv
from tpp.training import StepHooks, Trainer, build_optimizer, parse_lr_schedule
from tpp.util.modules import unwrap, warn_caller


def exists(path: Path | None) -> bool:
    """Whether ``path`` is a file, as rank 0 sees it (all ranks then take the same branch)."""
    return bool(broadcast_object(path is not None and path.is_file()))


def pruner_options(config: Any, method: Any, hooks_only: bool = False) -> dict[str, Any]:
    names = set(method.hook_options) if hooks_only else {o.name for o in method.options} | {"ignored_layers"}
    return {k: v for k, v in config.pruner_options.items() if k in names and v is not None}


def regularize(model, pruner, train_loader, test_loader, config, context, out, say, clock) -> dict[str, Any]:
    """Stage 1: train with the pruner's hooks at a constant LR until it is done."""
    iterations = pruner.total_iterations
    epochs = math.ceil(iterations / max(len(train_loader), 1)) + 1
    bound = "" if getattr(pruner.schedule, "fixed_length", True) else "at most "  # adaptive: ends when converged
    say(f"regularising: {bound}{iterations:,} iterations (~{epochs - 1:,} epochs) at lr {config.prune_lr:g}")
    optimizer = build_optimizer(model, config.prune_lr, config.momentum, config.weight_decay)
    hooks = StepHooks(
        penalty=pruner.penalty,
        after_backward=pruner.regularize,
        after_step=pruner.step,
        should_stop=lambda: pruner.done,
        postfix=lambda: {"phase": pruner.phase, "lambda": f"{pruner.reg_value:.4g}"},
    )
    trainer = Trainer(
        model,
        optimizer,
        train_loader,
        test_loader,
        epochs=epochs,
        schedule=parse_lr_schedule(f"0:{config.prune_lr}"),
        hooks=hooks,
        checkpoint_dir=out / "prune" if out is not None else None,
        extra_state={"pruner": pruner, "clock": clock},
        quiet=context.quiet,
        rank=context.rank,
        print_fn=context.print_fn,
        loggers=[StageLogger(logger, "regularize") for logger in context.loggers],
        speed=context.speed,
    )
    last = out / "prune" / "last.pt" if out is not None else None
    if context.resume and exists(last):
        done = trainer.resume(last, load_checkpoint(last))
        say(
            f"resuming the regularisation from epoch {done + 1} (iteration {pruner.iteration:,} of {bound}{iterations:,})"
        )
    result = trainer.fit()
    warn_if_cut_short(pruner.schedule.summary())
    return {
        "iterations": pruner.iteration,
        "epochs": result.epochs_completed,
        "final_lambda": pruner.reg_value,
        "schedule": pruner.schedule.summary(),
        "best_top1": result.best_top1,
        "last_top1": result.last_top1,
        "history": stage_history(context.loggers, "regularize", result.history),
    }


def finetune(
    model, train_loader, test_loader, config, method, context, out, clock, steps: int | None = None
) -> tuple[nn.Module, dict]:
    """Stage 3: a fresh SGD optimizer (the old one points at replaced tensors) and the LR schedule, for
    ``config.ft_epochs`` epochs, or (an equal budget) for ``steps`` optimizer steps: as many epochs as
    they take, the LR schedule spread over those, the last epoch cut at the step."""
    epochs = config.ft_epochs if steps is None else math.ceil(max(steps, 0) / max(len(train_loader), 1))
    if epochs == 0:
        return model, {"epochs": 0, "steps": 0, "best_top1": None, "last_top1": None, "history": []}
    schedule = parse_lr_schedule(config.ft_lr)
    optimizer = build_optimizer(model, schedule.lr_at(0, epochs), config.momentum, config.weight_decay)
    hooks = StepHooks()
    if steps is not None:
        hooks.should_stop = lambda: trainer.global_step >= steps
    if config.jsv_every_epoch and config.jsv_batches > 0:
        hooks.epoch_end = lambda epoch: {"jsv_mean": measure_jsv(unwrap(model), train_loader, config)["mean"]}
    penalty = method.make_finetune_penalty(unwrap(model), **pruner_options(config, method, hooks_only=True))
    if penalty is not None:
        hooks.penalty = penalty
    trainer = Trainer(
        model,
        optimizer,
        train_loader,
        test_loader,
        epochs=epochs,
        schedule=schedule,
        hooks=hooks,
        checkpoint_dir=out / "finetune" if out is not None else None,
        quiet=context.quiet,
        rank=context.rank,
        print_fn=context.print_fn,
        loggers=[StageLogger(logger, "finetune") for logger in context.loggers],
        speed=context.speed,
        extra_state={"clock": clock},
    )
    last = out / "finetune" / "last.pt" if out is not None else None
    if context.resume and exists(last):
        done = trainer.resume(last, load_checkpoint(last))
        if context.rank == 0 and not context.quiet:
            context.print_fn(f"resuming the fine-tuning from epoch {done + 1} of {epochs}")
    result = trainer.fit()
    history = stage_history(context.loggers, "finetune", result.history)
    summary = {
        "epochs": result.epochs_completed,
        "steps": trainer.global_step,
        "best_top1": result.best_top1,
        "last_top1": result.last_top1,
        "last_top5": result.last_top5,
        "history": history,
    }
    if history and "test_perplexity" in history[-1]:
        summary["last_perplexity"] = history[-1]["test_perplexity"]
    return model, summary


def warn_if_cut_short(summary: dict[str, Any]) -> None:
    """An adaptive regularisation that hit ``max_iterations`` removes channels that are not yet small:
    said as a warning (also under --quiet), since the report alone would hide it."""
    if summary.get("reason") != "max_iterations":
        return
    ratio = summary.get("final_ratio")
    size = "" if ratio is None else f" (pruned/kept magnitude {ratio:.3g})"
    warn_caller(
        f"tpp: the adaptive regularisation stopped at max_iterations={summary.get('iterations')} before "
        f"every pruned unit was small{size}; removal will cost accuracy: raise --max-iterations or --reg-step",
        package="tpp.jobs",
    )
