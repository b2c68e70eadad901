"""Paired comparison by seed: the reference method minus each other method, seed by seed.

Two methods run with the same seed share what the seed fixes (the base model's initialisation and the data
order where the recipe ties them to it), so the per-seed difference cancels that shared luck: a difference
that holds on every seed says more than two overlapping ``mean ± std`` cells. Runs are paired within one
(model, dataset, ratio, fine-tuning LR) cell of the reference method; a seed present on one side only, or
a run without the metric, is left out and counted in a note under the table.
"""

from __future__ import annotations

import math
from statistics import fmean, pstdev
from typing import Any, Mapping, Sequence

from tpp.errors import ConfigError
from tpp.reporting.collect import value
from tpp.reporting.tables import METRICS, aggregate, markdown_table, pair_cells, several_pairs


def paired_table(runs: Sequence[Mapping[str, Any]], reference: str = "tpp", metric: str = "last_top1") -> str:
    """Markdown table of ``reference`` minus each other method, paired by seed, or ``""`` when no cell of ``runs``
    has both the reference and another method.

    One row per (model, dataset, ratio, fine-tuning LR) cell of the reference and other method sharing seeds
    with it: the mean difference of ``metric`` (a :data:`tpp.reporting.tables.METRICS` key) ± its population
    std over the paired seeds, their number, on how many the reference is higher (``3/3``) and the per-seed
    differences in seed order. A repeated seed counts once (as in :func:`tpp.reporting.tables.aggregate`).
    Seeds found on one side only, runs with no seed and runs without ``metric`` are not paired; a note under
    the table counts them. Model and dataset columns appear when ``runs`` span several.

    Raises:
        ConfigError: ``metric`` is not a METRICS key.
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r} for the paired table; use one of {', '.join(METRICS)}")
    groups = aggregate(runs)
    several = several_pairs(groups)
    rows: list[list[str]] = []
    left_out: list[str] = []
    for ref in (g for g in groups if g["method"] == reference):
        cell = (ref["model"], ref["dataset"], ref["ratio"], ref["lr"])
        for other in groups:
            if other["method"] == reference or (other["model"], other["dataset"], other["ratio"], other["lr"]) != cell:
                continue
            mine, theirs = _by_seed(ref["runs"], metric), _by_seed(other["runs"], metric)
            seeds = sorted(mine.keys() & theirs.keys(), key=_seed_order)
            unpaired = len(ref["runs"]) + len(other["runs"]) - 2 * len(seeds)
            if unpaired:
                alone = [
                    f"{method} seed {s}"
                    for method, found in ((reference, mine), (other["method"], theirs))
                    for s in sorted(found.keys() - seeds, key=_seed_order)
                ]
                missing = unpaired - len(alone)  # no seed recorded, or no value of the metric
                where = f"`{ref['model']}` on `{ref['dataset']}`, " if several else ""
                left_out.append(
                    f"{where}`{other['method']}` at ratio `{ref['ratio']}`, LR {ref['lr']}: {unpaired} run(s) ("
                    + ", ".join(alone + ([f"{missing} without a seed or {metric}"] if missing else []))
                    + ")"
                )
            if not seeds:
                continue
            differences = [mine[s] - theirs[s] for s in seeds]
            mean = _signed(fmean(differences)) + (f" ± {pstdev(differences):.2f}" if len(seeds) > 1 else "")
            rows.append(
                pair_cells(ref, several)
                + [
                    f"`{ref['ratio']}`",
                    ref["lr"],
                    other["method"],
                    mean,
                    str(len(seeds)),
                    f"{sum(d > 0 for d in differences)}/{len(seeds)}",
                    ", ".join(seeds),
                    ", ".join(_signed(d) for d in differences),
                ]
            )
    if not rows and not left_out:
        return ""
    header = (["model", "dataset"] if several else []) + [
        "ratio",
        "fine-tune LR",
        "method",
        f"{reference} − method, mean ± std",
        "seeds paired",
        f"{reference} higher",
        "seeds",
        "per-seed differences",
    ]
    parts = (
        [markdown_table(header, rows)] if rows else [f"No method shares a seed with `{reference}` in the same cell."]
    )
    if left_out:
        parts.append(
            "\nNot paired (a seed on one side only, or a run without a seed or the metric): "
            + "; ".join(left_out)
            + "."
        )
    return "\n".join(parts)


def _signed(number: float) -> str:
    """``+1.20`` / ``-0.50``; a difference that rounds to zero is ``+0.00``, never ``-0.00``."""
    return f"{round(number, 2) + 0.0:+.2f}"  # adding 0.0 turns -0.0 into 0.0


def _by_seed(members: Sequence[Mapping[str, Any]], metric: str) -> dict[str, float]:
    """``{seed label: metric}`` of a group's runs that recorded both (aggregate already counts a seed once)."""
    found: dict[str, float] = {}
    for run in members:
        number = value(run, *METRICS[metric])
        if run.get("seed") is not None and number is not None and math.isfinite(number):
            found[str(run["seed"])] = number
    return found


def _seed_order(seed: str) -> tuple[int, float, str]:
    """Numeric seeds in numeric order (``2`` before ``10``), any other label after them."""
    try:
        return 0, float(seed), seed
    except ValueError:
        return 1, 0.0, seed
