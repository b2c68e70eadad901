"""Resuming ``tpp prune``: which options define a job, and whether the job in ``--out`` is finished."""

from __future__ import annotations

import argparse
from pathlib import Path

from tpp.cli.prune_summary import summary_line
from tpp.errors import ConfigError

# options that define a job: resuming it with other values would mix two experiments (--ft-epochs
# may grow, as --epochs of `tpp train`, to fine-tune a finished job for longer); every method option
# (tpp.cli.method_options) is compared as well
RESUME_MUST_MATCH = (
    "model",
    "dataset",
    "method",
    "ratio",
    "global_ratio",
    "speedup",
    "target_flops",
    "scope",
    "ignore",
    "prune_lr",
    "ft_lr",
    "momentum",
    "weight_decay",
    "batch_size",
    "train_subset",
    "seed",
    "jsv_batches",
    "jsv_every_epoch",
    "jsv_mode",
    "importance",
    "calibration_batches",
    "heads",
    "seq_len",
    "windows_per_epoch",
    "fast",
    "val_split",
    "eval_split",
    "budget_steps",
)


def finished_job(args: argparse.Namespace) -> str | None:
    """The summary of the finished job in ``--out`` if resuming it has nothing to do, else None.

    Raises:
        ConfigError: the job in ``--out`` was run with other values of an option that defines it.
    """
    import json

    from tpp.jobs.prune_job import read_report

    out = Path(args.out)
    try:
        saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = None
    if isinstance(saved, dict) and saved.get("command") not in (None, "prune"):
        raise ConfigError(
            f"--resume given but {out} holds a `tpp {saved['command']}` run, not a pruning job; "
            "pass the --out of a tpp prune job"
        )
    if isinstance(saved, dict):
        from tpp.cli.method_options import option_names

        method_keys = option_names()  # absent when not given: the method's default applied
        for key in (*RESUME_MUST_MATCH, *method_keys):
            ours = getattr(args, key, None)
            theirs = saved.get(key) if key in method_keys else saved.get(key, ours)
            if theirs != ours and not (key == "ignore" and not theirs and not ours):
                flag = "--" + key.replace("_", "-")
                then = f"without {flag} (its default)" if theirs is None else f"with {flag} {theirs}"
                now = "" if ours is None and theirs is None else f", not {'without it' if ours is None else ours}"
                raise ConfigError(
                    f"the job in {out} was run {then}{now}; resume it the same way, or pass another --out"
                )
    report = read_report(out)
    if report is None or saved is None or saved.get("ft_epochs") != args.ft_epochs:
        return None  # unfinished, or to be fine-tuned for longer
    return f"{out} is a finished job; nothing to redo. " + summary_line(args.method, report, out)
