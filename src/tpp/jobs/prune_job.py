"""The end-to-end pruning job: regularise -> remove -> fine-tune, with a report.

Stage 1 (regularised methods only) trains at a constant ``prune_lr`` with the pruner's hooks until
``pruner.done`` (docs/method.md#schedule). Stage 2 removes the channels physically and saves the pruned model
as data. Stage 3 fine-tunes with a fresh SGD optimizer and the given LR schedule (docs/method.md#fine-tuning).
Every stage checkpoints, so ``resume=True`` continues a killed job where it stopped.

Folder layout under ``out``::

    prune/last.pt        stage-1 checkpoint (model, optimizer, pruner state, RNG)
    pruned.pt            the model right after removal (tpp.save_pruned format)
    finetune/last.pt     stage-3 checkpoints (best.pt too)
    pruned_model.pt      the fine-tuned pruned model (tpp.save_pruned format): the last fine-tuning epoch
    report.json          sizes, speedup, accuracies before / right after removal / after fine-tuning, pruned layers
    curves.png, layers.png, jsv.png, README.txt   plots and a guide to the folder (tpp.jobs.job_outputs)

``wall_seconds`` in the report counts every process of a resumed job (:class:`~tpp.jobs.job_outputs.JobClock`).

Multi-process (torchrun + DDP, see :mod:`tpp.distributed`): pass the DDP-wrapped model, the
rank and ``JobContext.prepare``. Every rank selects the same filters (the pruner broadcasts rank
0's choice) and runs the same regulariser on all-reduced gradients; removal unwraps, prunes and
re-wraps, and fine-tuning gets a fresh optimizer on the new parameters. Only rank 0 writes under
``out``; on resume every rank reads the same files, following rank 0's view of which exist. The
JSV is measured on rank 0's shard of the first training batch(es).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn as nn

from tpp.checkpoints import load_pruned, read_pruned, save_pruned
from tpp.distributed import broadcast_parameters
from tpp.errors import CheckpointError, ConfigError
from tpp.jobs import stages
from tpp.jobs.context import JobContext
from tpp.jobs.job_outputs import JobClock, layer_table, unit_widths, write_run_outputs
from tpp.jobs.measures import calibrated_importance, measure_jsv, train_steps
from tpp.jobs.stages import exists, pruner_options
from tpp.metrics.counting import count
from tpp.pruning.calibration import IMPORTANCES
from tpp.pruning.registry import get_method
from tpp.training import evaluate, get_rng_state, parse_lr_schedule, set_rng_state
from tpp.training.optim import DEFAULT_MOMENTUM, DEFAULT_WEIGHT_DECAY
from tpp.util.atomic import atomic_write_json, json_plain, remove_stale_temporaries
from tpp.util.modules import unwrap

REPORT = "report.json"
JSV_MODES = ("eval", "train")
# the files a job writes under ``out`` (the folder layout above)
JOB_FILES = ("pruned.pt", "pruned_model.pt", REPORT, "jsv.png", "curves.png", "layers.png", "README.txt")
FACTS = ("pruned_indices", "layers", "regularization")  # what stage 1 knew, kept in pruned.pt for resumes


@dataclass
class PruneJobConfig:
    """Everything a pruning job needs besides the model and the data (defaults: the paper's CIFAR recipe)."""

    method: str = "tpp"
    ratio: Any = 0.5
    global_ratio: float | None = None
    scope: str = "internal"
    pruner_options: dict[str, Any] = field(default_factory=dict)
    prune_lr: float = 1e-3
    ft_epochs: int = 120
    ft_lr: str = "0:0.01,60:0.001,90:0.0001"
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    momentum: float = DEFAULT_MOMENTUM
    jsv_batches: int = 1  # batches for the JSV right after removal (0: skip)
    jsv_every_epoch: bool = False  # also measure it after every fine-tuning epoch
    jsv_mode: str = "eval"  # "train": BatchNorm batch statistics, the paper's protocol (docs/method.md#jsv)
    importance: str = "l1"  # how channels are chosen: l1 (the paper), activation (Wanda-sp) or taylor
    calibration_batches: int = 8  # training batches that activation / taylor importance read
    heads: bool = False  # also whole attention heads (whole key/value groups) as units (tpp.pruning.heads)
    # equal budgets: optimizer steps after the base model, regularisation and fine-tuning together; the
    # fine-tuning gets what the regularisation leaves (so a one-shot method fine-tunes longer), in as many
    # epochs as that takes, the last one cut at the step: ft_epochs is then not used
    budget_steps: int | None = None

    def check(self) -> None:
        """Refuse values that would fail (or be ignored) only after hours of regularisation.

        Raises:
            ConfigError: naming the field.
        """
        if self.jsv_mode not in JSV_MODES:
            raise ConfigError(f"jsv_mode must be one of {', '.join(JSV_MODES)}, got {self.jsv_mode!r}")
        if self.importance not in IMPORTANCES:
            raise ConfigError(f"importance must be one of {', '.join(IMPORTANCES)}, got {self.importance!r}")
        if self.importance != "l1" and (not isinstance(self.calibration_batches, int) or self.calibration_batches < 1):
            raise ConfigError(
                f"importance {self.importance} reads calibration batches: calibration_batches must be "
                f"a whole number >= 1, got {self.calibration_batches!r}"
            )
        for name in ("ft_epochs", "jsv_batches"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}")
        for name, low in (("prune_lr", 0.0), ("weight_decay", None), ("momentum", None)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or value == low:
                bound = "> 0" if low is not None else ">= 0"
                raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")
        if self.budget_steps is not None and (
            not isinstance(self.budget_steps, int) or isinstance(self.budget_steps, bool) or self.budget_steps < 1
        ):
            raise ConfigError(f"budget_steps must be a whole number >= 1 (or None), got {self.budget_steps!r}")
        parse_lr_schedule(self.ft_lr)


def run_prune_job(
    model: nn.Module,
    train_loader: Iterable,
    test_loader: Iterable,
    example_inputs: torch.Tensor,
    config: PruneJobConfig,
    context: JobContext | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Run the three stages on a pretrained ``model``; returns the fine-tuned pruned model and the report.

    With ``context.resume`` a job whose ``report.json`` exists is finished: nothing is redone or
    rewritten, and the saved pruned model and report are returned."""
    context = context or JobContext()
    config.check()
    method = get_method(config.method)
    out = Path(context.out) if context.out is not None else None
    if out is not None and context.rank == 0:
        remove_stale_temporaries(out, JOB_FILES)
    if context.resume and out is not None and exists(out / REPORT) and _finished(out, config):
        if context.rank == 0 and not context.quiet:
            context.print_fn(f"{out} is a finished job (it has {REPORT}); nothing to redo")
        report = read_report(out)
        return _prepared(load_pruned(out / "pruned_model.pt", base_model=unwrap(model)), context), report
    device = next(model.parameters()).device
    say = context.print_fn if (context.rank == 0 and not context.quiet) else (lambda _: None)
    clock = JobClock()  # earlier processes' seconds come with the files a resume loads
    base_counts = count(model, example_inputs)
    accuracy_before = evaluate(unwrap(model), test_loader, device)
    report: dict[str, Any] = {
        "method": config.method,
        "config": json_plain(asdict(config)),
        "method_options": json_plain(method_settings(method, config)),
        "accuracy_before": accuracy_before,
        "counts_before": base_counts.as_dict(),
        "model": _spec_of(model),
    }

    pruned_file = out / "pruned.pt" if out is not None else None
    if context.resume and exists(pruned_file):
        say(f"resuming: loading the pruned model from {pruned_file}")
        # the old DDP wrapper holds buckets of the replaced parameters: re-wrap the bare module
        model = _prepared(load_pruned(pruned_file, base_model=unwrap(model)), context)
        saved = read_pruned(pruned_file)["extra"]
        report.update({k: saved[k] for k in FACTS if k in saved})
        clock.load_state_dict(saved)
        if isinstance(saved.get("rng"), dict):  # fine-tuning then draws what it would have uninterrupted
            set_rng_state(saved["rng"])
    elif _dense_control(config):  # nothing to remove: fine-tuning alone, the baseline every pruned model is held to
        say("ratio 0: nothing is removed; the unpruned model is fine-tuned with the same budget (a dense control)")
        report["pruned_indices"], report["layers"] = {}, []
        if pruned_file is not None and context.rank == 0:
            save_pruned(
                unwrap(model),
                pruned_file,
                extra={"pruned_indices": {}, "layers": [], "rng": get_rng_state(), **clock.state_dict()},
            )
    else:
        importance = calibrated_importance(model, train_loader, config)
        pruner = method.make_pruner(
            model,
            example_inputs,
            ratio=config.ratio,
            scope=config.scope,
            global_ratio=config.global_ratio,
            **_choice_options(importance, config),
            **pruner_options(config, method),
        )
        report["pruned_indices"] = pruner.pruned_indices
        _check_budget(config, method, pruner)
        if method.regularized:
            report["regularization"] = stages.regularize(
                model, pruner, train_loader, test_loader, config, context, out, say, clock
            )
        say(f"removing channels ({config.method}, {_describe(pruner)})")
        widths = unit_widths(pruner)  # the widths before removal
        model = pruner.prune()  # a DDP model comes back re-wrapped around the smaller module
        # what was removed: a method that chooses at removal (select_at="prune") chose only now
        report["pruned_indices"] = pruner.pruned_indices
        _check_budget(config, method, pruner)
        report["layers"] = layer_table(widths, report["pruned_indices"])
        if method.after_prune is not None:
            method.after_prune(unwrap(model))
            broadcast_parameters(unwrap(model))  # a random re-init must be the same on every rank
        model = _prepared(model, context)  # re-applies channels_last, which removal loses
        if pruned_file is not None and context.rank == 0:
            facts = json_plain({k: report[k] for k in FACTS if k in report})
            save_pruned(model, pruned_file, extra={**facts, "rng": get_rng_state(), **clock.state_dict()})
    report["accuracy_after_removal"] = evaluate(unwrap(model), test_loader, device)
    if config.jsv_batches > 0:
        # the batches of the last regularisation epoch (epoch 0 without one), resumed or not
        regularized_epochs = int((report.get("regularization") or {}).get("epochs") or 0)
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(max(regularized_epochs - 1, 0))
        report["jsv_after_prune"] = measure_jsv(unwrap(model), train_loader, config)
        say(f"mean JSV right after removal: {report['jsv_after_prune']['mean']:.4g}")
    pruned_counts = count(model, example_inputs)
    report["counts_after"] = pruned_counts.as_dict()
    report["speedup"] = pruned_counts.speedup_over(base_counts)
    report["params_reduction"] = pruned_counts.params_reduction(base_counts)
    after = report["accuracy_after_removal"]
    quality = f"perplexity {after['perplexity']:.3f}" if "perplexity" in after else f"top1 {after['top1']:.2f}"
    say(
        f"after removal: {quality}  params {base_counts.params:,} -> {pruned_counts.params:,}  "
        f"FLOPs speedup {report['speedup']:.2f}x"
    )

    steps = (
        None
        if config.budget_steps is None
        else config.budget_steps - int((report.get("regularization") or {}).get("iterations") or 0)
    )  # what the regularisation left
    model, report["finetune"] = stages.finetune(
        model, train_loader, test_loader, config, method, context, out, clock, steps=steps
    )
    report["train_steps"] = train_steps(report, train_loader)
    report["wall_seconds"] = clock.seconds()
    if out is not None and context.rank == 0:
        save_pruned(model, out / "pruned_model.pt", extra={"report": json_plain(report)})
        write_run_outputs(out, json_plain(report), context.print_fn)  # plots and README.txt; never fails the job
        atomic_write_json(out / REPORT, json_plain(report))  # last: a report.json means the job is finished
    return model, report


def read_report(out: Path) -> dict[str, Any] | None:
    """The ``report.json`` of a finished job in ``out``, or None if there is none (or it is damaged)."""
    try:
        report = json.loads((Path(out) / REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


def _finished(out: Path, config: PruneJobConfig) -> bool:
    """Whether the job in ``out``, which has a report, is done for ``config``: True if it ran with
    the same config, False if only ``ft_epochs`` differs (fine-tune it further).

    Raises:
        ConfigError: the job ran with another value of a field that defines it.
        CheckpointError: its report.json is damaged.
    """
    report = read_report(out)
    if report is None:
        raise CheckpointError(f"{out / REPORT} is damaged; delete it and resume again to rewrite it")
    ran, asked = report.get("config") or {}, json_plain(asdict(config))
    for key in sorted(asked):
        if key != "ft_epochs" and key in ran and ran[key] != asked[key]:
            raise ConfigError(
                f"the job in {out} ran with {key}={ran[key]!r}, not {asked[key]!r}; resume it with the "
                "same settings or give it another folder"
            )
    return ran.get("ft_epochs") == config.ft_epochs


def _prepared(model: nn.Module, context: JobContext) -> nn.Module:
    return context.prepare(model) if context.prepare is not None else model


def method_settings(method: Any, config: PruneJobConfig) -> dict[str, Any]:
    """Every option of the method as this job runs it: the given ones, the method's defaults otherwise."""
    given = {k: v for k, v in pruner_options(config, method).items() if k != "ignored_layers"}
    return {**{o.name: o.default for o in method.options}, **given}


def _choice_options(importance: Any, config: PruneJobConfig) -> dict[str, Any]:
    """``importance`` / ``heads`` for the pruner only when they are not the defaults, so that a user's
    registered pruner that takes neither still runs the default job."""
    return {
        **({"importance": importance} if importance is not None else {}),
        **({"heads": True} if config.heads else {}),
    }


def _check_budget(config: PruneJobConfig, method: Any, pruner: Any) -> None:
    """Refuse, before any regularisation, a budget the regularisation alone would exceed."""
    if config.budget_steps is None or not method.regularized:
        return
    needed = int(pruner.total_iterations)  # the adaptive schedule's bound: it may run that long
    if needed > config.budget_steps:
        raise ConfigError(
            f"budget_steps {config.budget_steps:,} is less than the {needed:,} regularisation "
            f"iterations of {config.method}; raise the budget or shorten the schedule"
        )


def _dense_control(config: PruneJobConfig) -> bool:
    """A job with ratio 0 everywhere removes nothing: it trains the dense model with the job's budget."""
    ratios = config.ratio.values() if isinstance(config.ratio, dict) else [config.ratio]
    return config.global_ratio in (None, 0) and all(isinstance(r, (int, float)) and r == 0 for r in ratios)


def _spec_of(model: nn.Module) -> str | None:
    """The spec the model was built from (``resnet56``, ``hf:...``, ``mymodels:res_cnn``), if it records one."""
    record = getattr(unwrap(model), "tpp_spec", None) or {}
    return record.get("spec") or record.get("name")


def _describe(pruner) -> str:
    pruned = sum(len(v) for v in pruner.pruned_indices.values())
    return f"{pruned} channels in {len(pruner.pruned_indices)} units"
