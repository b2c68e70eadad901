"""Aggregation over seeds and the markdown tables of a report.

Cells are ``mean ± std`` over the seeds of a (model, dataset, method, ratio, fine-tuning LR) group
(:mod:`tpp.reporting.groups`), with the *population* standard deviation, as the paper's tables
(docs/method.md#reporting). A table of runs on several models or datasets has a model and a dataset column.
"""

from __future__ import annotations

import math
from statistics import fmean
from typing import Any, Iterable, Mapping, Sequence

from tpp.reporting.collect import value
from tpp.reporting.groups import drop_duplicate_seeds, group_key

# (column title, key path in report.json)
METRICS: dict[str, tuple[str, ...]] = {
    "unpruned_top1": ("accuracy_before", "top1"),
    "best_top1": ("finetune", "best_top1"),
    "last_top1": ("finetune", "last_top1"),
    "after_removal_top1": ("accuracy_after_removal", "top1"),
    "jsv_after_prune": ("jsv_after_prune", "mean"),
    "speedup": ("speedup",),
    "params_reduction": ("params_reduction",),
    "wall_seconds": ("wall_seconds",),
}


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None, int]:
    """``(mean, population std, n)`` of the non-None values; ``(None, None, 0)`` if there are none."""
    numbers = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not numbers:
        return None, None, 0
    mean = sum(numbers) / len(numbers)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in numbers) / len(numbers)), len(numbers)


def aggregate(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One dict per (model, dataset, method, ratio, lr) group: ``n``, ``seeds``, ``runs`` and ``(mean, std)``
    per metric. A repeated seed of a group counts once (:func:`tpp.reporting.groups.drop_duplicate_seeds`).

    Groups are ordered by model and dataset, LR and method (first appearance) and then by speedup.
    """
    runs = drop_duplicate_seeds(runs)[0]
    groups: dict[tuple[str, str, str, str, str], list] = {}
    for run in runs:
        groups.setdefault(group_key(run), []).append(run)
    pair_order = list(dict.fromkeys(key[:2] for key in groups))
    lr_order = list(dict.fromkeys(run["lr"] for run in runs))
    method_order = list(dict.fromkeys(run["method"] for run in runs))
    result = []
    for (model, dataset, method, ratio, lr), members in groups.items():
        row: dict[str, Any] = {
            "model": model,
            "dataset": dataset,
            "method": method,
            "ratio": ratio,
            "lr": lr,
            "runs": members,
            "n": len(members),
            "seeds": sorted((r["seed"] for r in members if r["seed"] is not None), key=str),
        }
        for name, keys in METRICS.items():
            mean, std, _ = mean_std(value(r, *keys) for r in members)
            row[name] = (mean, std)
        result.append(row)
    result.sort(
        key=lambda g: (
            pair_order.index((g["model"], g["dataset"])),
            lr_order.index(g["lr"]),
            method_order.index(g["method"]),
            g["speedup"][0] if g["speedup"][0] is not None else math.inf,
            g["ratio"],
        )
    )
    return result


def fmt(pair: tuple[float | None, float | None], digits: int = 2, scale: float = 1.0, n: int = 2) -> str:
    """``93.81 ± 0.11`` (no ± for a single run), ``n/a`` when missing."""
    mean, std = pair
    if mean is None:
        return "n/a"
    text = f"{mean * scale:.{digits}f}"
    return text if n < 2 or std is None else f"{text} ± {std * scale:.{digits}f}"


def _unit(text: str, unit: str) -> str:
    return text if text == "n/a" else text + unit


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A markdown table of ``rows`` under ``header``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def budget_text(runs: Sequence[Mapping[str, Any]]) -> str:
    """The optimizer steps after the base model, mean over ``runs`` as whole numbers: ``'320 (160 + 160)'``,
    total (regularisation + fine-tuning); ``''`` when a run did not record its fine-tuning steps (jobs made
    before budgets existed). A run without regularisation iterations (l1, l1+orthp) had none: 0."""
    found = [value(r, "finetune", "steps") for r in runs]
    finetune = [steps for steps in found if steps is not None]
    if not runs or len(finetune) < len(found):
        return ""
    regularize = [value(r, "regularization", "iterations") or 0.0 for r in runs]
    # the total is the mean of each run's own total: equal budgets show their exact number even if the split varies
    total = fmean(reg + ft for reg, ft in zip(regularize, finetune))
    return f"{round(total)} ({round(fmean(regularize))} + {round(fmean(finetune))})"


def several_pairs(groups: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``groups`` (from :func:`aggregate`) span more than one (model, dataset): their tables then name them."""
    return len({(g["model"], g["dataset"]) for g in groups}) > 1


def pair_cells(g: Mapping[str, Any], several: bool) -> list[str]:
    """The model and dataset cells of a group's row, when the table spans several (else none)."""
    return [f"`{g['model']}`", f"`{g['dataset']}`"] if several else []


def summary_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table, one row per (model, dataset, method, ratio, LR): the unpruned model's top-1 and the
    accuracies (%), the training budget (:func:`budget_text`), mean JSV, speedup, params, time; model and
    dataset columns when there are several."""
    groups = aggregate(runs)
    several = several_pairs(groups)
    jsv = any(g["jsv_after_prune"][0] is not None for g in groups)
    header = (["model", "dataset"] if several else []) + [
        "method",
        "ratio",
        "fine-tune LR",
        "seeds",
        "unpruned top-1",
        "best top-1",
        "last top-1",
        "top-1 after removal",
    ]
    header += ["steps after base (reg + FT)"]
    header += ["mean JSV after pruning"] if jsv else []
    header += ["FLOPs speedup", "params pruned", "wall time per job"]
    rows = []
    for g in groups:
        n = g["n"]
        row = pair_cells(g, several) + [
            g["method"],
            f"`{g['ratio']}`",
            g["lr"],
            str(n),
            fmt(g["unpruned_top1"], n=n),
            fmt(g["best_top1"], n=n),
            fmt(g["last_top1"], n=n),
            fmt(g["after_removal_top1"], n=n),
        ]
        row += [budget_text(g["runs"])]
        row += [fmt(g["jsv_after_prune"], 4, n=n)] if jsv else []
        row += [
            _unit(fmt(g["speedup"], n=1), "x"),
            _unit(fmt(g["params_reduction"], 2, 100.0, n=1), "%"),
            _unit(fmt(g["wall_seconds"], 1, 1 / 60, n=1), " min"),
        ]
        rows.append(row)
    return markdown_table(header, rows)


def pivot_table(runs: Sequence[Mapping[str, Any]], metric: str = "best_top1") -> str:
    """The paper's layout: one row per (method, LR), one column per ratio, cells ``mean ± std``;
    model and dataset columns when the runs have several."""
    groups = aggregate(runs)
    several = several_pairs(groups)
    ratios = list(dict.fromkeys(g["ratio"] for g in sorted(groups, key=lambda g: g["speedup"][0] or 0.0)))
    cells: dict[tuple[str, ...], dict[str, str]] = {}
    for g in groups:
        cells.setdefault((*pair_cells(g, several), g["method"], g["lr"]), {})[g["ratio"]] = fmt(g[metric], n=g["n"])
    header = (["model", "dataset"] if several else []) + ["method", "fine-tune LR"] + [f"`{r}`" for r in ratios]
    rows = [[*key] + [c.get(r, "") for r in ratios] for key, c in cells.items()]
    return markdown_table(header, rows)


def paper_table(runs: Sequence[Mapping[str, Any]], paper_rows: Sequence[Mapping[str, Any]]) -> str:
    """Paper vs. ours. ``paper_rows`` items: ``method``, ``ratio`` / ``lr`` labels (None: the paper
    does not state it, so every ratio / LR of ours is compared), ``top1``, ``top1_std``, ``jsv_after_prune``."""
    groups = aggregate(runs)
    header = [
        "method",
        "ratio",
        "fine-tune LR",
        "paper best top-1",
        "ours best top-1",
        "difference",
        "paper JSV after pruning",
        "ours JSV after pruning",
    ]
    rows = []
    for p in paper_rows:
        matches = [
            g
            for g in groups
            if g["method"] == p["method"] and p.get("ratio") in (None, g["ratio"]) and p.get("lr") in (None, g["lr"])
        ]
        paper = (
            "n/a"
            if p.get("top1") is None
            else fmt((p["top1"], p.get("top1_std")), n=2 if p.get("top1_std") is not None else 1)
        )
        jsv = "n/a" if p.get("jsv_after_prune") is None else f"{p['jsv_after_prune']:.4f}"
        if not matches:
            rows.append(
                [
                    p["method"],
                    f"`{p.get('ratio') or 'not stated'}`",
                    p.get("lr") or "any",
                    paper,
                    "not run",
                    "",
                    jsv,
                    "",
                ]
            )
        for g in matches:
            ours, diff = fmt(g["best_top1"], n=g["n"]), ""
            if p.get("top1") is not None and g["best_top1"][0] is not None:
                diff = f"{g['best_top1'][0] - p['top1']:+.2f}"
            ratio = g["ratio"] + ("" if p.get("ratio") else " (paper: not stated)")
            rows.append(
                [p["method"], f"`{ratio}`", g["lr"], paper, ours, diff, jsv, fmt(g["jsv_after_prune"], 4, n=g["n"])]
            )
    return markdown_table(header, rows)


def speedup_table(runs: Sequence[Mapping[str, Any]], paper: Mapping[str, Mapping[str, float | None]]) -> str:
    """Measured FLOPs speedup and parameter reduction per ratio next to the paper's."""
    measured: dict[str, dict[str, Any]] = {}
    for g in aggregate(runs):
        measured.setdefault(g["ratio"], g)
    header = ["ratio", "paper speedup", "ours speedup", "paper params pruned", "ours params pruned"]
    rows = []
    for label in list(paper) + [r for r in measured if r not in paper]:
        p, g = paper.get(label, {}), measured.get(label)
        rows.append(
            [
                f"`{label}`",
                "n/a" if p.get("speedup") is None else f"{p['speedup']:.2f}x",
                "not run" if g is None else _unit(fmt(g["speedup"], n=1), "x"),
                "n/a" if p.get("params_reduction") is None else f"{p['params_reduction']:.2f}%",
                "not run" if g is None else _unit(fmt(g["params_reduction"], 2, 100.0, n=1), "%"),
            ]
        )
    return markdown_table(header, rows)
