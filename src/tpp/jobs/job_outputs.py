"""What a prune job keeps beside its models: the per-epoch records of its stages, its wall time across
resumed processes, the per-layer table of what it removed, and the plots and guide of its folder."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping

# the fields of an epoch record a report keeps (the epoch's wall "time" stays in metrics.jsonl: a
# report, its plots and its guide hold only what an uninterrupted run would reproduce)
HISTORY_KEYS = ("epoch", "lr", "train_loss", "test_top1", "test_loss", "test_perplexity", "best_top1", "jsv_mean")
# the files write_run_outputs draws, each with the function that draws it from the report
PLOTS = (("curves.png", "plot_job_curves"), ("layers.png", "plot_pruned_layers"), ("jsv.png", "plot_jsv_curve"))


class JobClock:
    """Wall seconds of a job over every process that ran it.

    Every checkpoint a stage commits keeps the seconds up to that commit (:meth:`state_dict`: a
    trainer's extra state, and ``pruned.pt``'s extra); a resumed process adds its own time to the
    latest such value it loads. Work a killed process did after its last commit is redone by the
    resume and so counted once. The key is ``wall_seconds``, the name run comparisons treat as volatile.
    """

    KEY = "wall_seconds"

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self._earlier = 0.0  # seconds of earlier processes, up to the latest commit this one loaded

    def seconds(self) -> float:
        """Seconds so far, earlier processes included."""
        return self._earlier + time.perf_counter() - self._started

    def state_dict(self) -> dict[str, float]:
        """``{"wall_seconds": seconds so far}``, for a checkpoint."""
        return {self.KEY: self.seconds()}

    def load_state_dict(self, state: Any) -> None:
        """Count the seconds a loaded checkpoint records (a file without them, or a damaged value, adds nothing)."""
        value = state.get(self.KEY) if isinstance(state, Mapping) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
            self._earlier = max(self._earlier, float(value))


def unit_widths(pruner: Any) -> dict[str, dict[str, Any]]:
    """Channels per prunable unit (``{"channels", "heads"}`` by root layer name) before removal, or {}
    for a user's pruner without ``units``."""
    widths = {}
    for unit in getattr(pruner, "units", None) or []:
        if isinstance(getattr(unit, "name", None), str) and isinstance(getattr(unit, "channels", None), int):
            widths[unit.name] = {"channels": unit.channels, "heads": getattr(unit, "heads", None) is not None}
    return widths


def layer_table(widths: Mapping[str, Mapping[str, Any]], pruned_indices: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``[{"name", "channels", "pruned"}]`` per unit in forward order (``heads: True`` where the
    channels are attention key/value heads); ``channels`` is None where the width is unknown."""
    names = list(widths) + [name for name in pruned_indices if name not in widths]
    table = []
    for name in names:
        row = {
            "name": name,
            "channels": (widths.get(name) or {}).get("channels"),
            "pruned": len(pruned_indices.get(name) or []),
        }
        if (widths.get(name) or {}).get("heads"):
            row["heads"] = True
        table.append(row)
    return table


def stage_history(loggers: list, stage: str, fallback: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The epoch records of ``stage`` ("regularize" or "finetune"), earlier processes' too when the
    job was resumed (a logger with ``records``, e.g. the RunDirectory), else ``fallback`` (this
    process's); each cut to :data:`HISTORY_KEYS`."""
    records = fallback
    for logger in loggers:
        by_epoch = {r["epoch"]: r for r in getattr(logger, "records", None) or [] if r.get("stage") == stage}
        if by_epoch:
            records = [by_epoch[e] for e in sorted(by_epoch)]
            break
    return [{k: r[k] for k in HISTORY_KEYS if k in r} for r in records]


class StageLogger:
    """Tags each epoch record with the stage it belongs to."""

    def __init__(self, logger: Any, stage: str) -> None:
        self.logger, self.stage = logger, stage

    def log_epoch(self, record: Mapping[str, Any]) -> None:
        """Pass ``record`` on with its ``stage``."""
        self.logger.log_epoch({**record, "stage": self.stage})

    def recover_epoch(self, record: Mapping[str, Any]) -> None:
        """Pass a record a resume recovered on with its ``stage``, to a logger that takes them."""
        if hasattr(self.logger, "recover_epoch"):
            self.logger.recover_epoch({**record, "stage": self.stage})


def write_run_outputs(out: Path, report: dict[str, Any], warn: Callable[[str], None]) -> None:
    """Draw the plots of :data:`PLOTS` and write ``README.txt`` (:func:`tpp.jobs.run_guide.run_guide`)
    in ``out``. They only show what ``report`` holds, so a failure of any (no matplotlib, a full disk)
    is one ``warn`` line and never fails the job; a plot with nothing to draw removes tpp's old one."""
    from tpp.jobs.run_guide import README, run_guide
    from tpp.util.atomic import atomic_write_text
    from tpp.util.owned import png_is_ours

    for name, function in PLOTS:
        try:
            from tpp.reporting import plots

            drawn = getattr(plots, function)(report, out / name)
            if drawn is None and (out / name).is_file() and png_is_ours(out / name):
                (out / name).unlink()  # an earlier run's plot in an overwritten folder would mislead
        except Exception as error:  # noqa: BLE001 - a plot is a view of the report, never worth the job
            warn(f"tpp: warning: {out / name} not drawn ({_reason(error)}); report.json holds its numbers")
    try:
        atomic_write_text(out / README, run_guide(out, report))
    except Exception as error:  # noqa: BLE001 - the guide describes the results; it is not one of them
        warn(f"tpp: warning: {out / README} not written ({_reason(error)}); report.json describes the job")


def _reason(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__
