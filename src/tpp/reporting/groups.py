"""What makes runs comparable: the (model, dataset, method, ratio, LR) group of a run, and duplicate seeds.

Runs are aggregated over seeds only within one group: jobs on different models or data are never
averaged together, whatever their method and ratio. Two runs of one group with the same seed are
one result recorded twice (a job copied or run again into another folder), not two seeds: only the
first, by folder path, is counted, and the report names the others.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

UNKNOWN = "?"


def group_key(run: Mapping[str, Any]) -> tuple[str, str, str, str, str]:
    """``(model, dataset, method, ratio, lr)`` of a collected run; the runs aggregated over seeds share it."""
    return (str(run.get("model", UNKNOWN)), str(run.get("dataset", UNKNOWN)), run["method"], run["ratio"], run["lr"])


def pairs(runs: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The distinct ``(model, dataset)`` of ``runs``, in order of first appearance."""
    return list(dict.fromkeys(group_key(r)[:2] for r in runs))


def of_pair(runs: Sequence[Mapping[str, Any]], pair: tuple[str, str]) -> list[Mapping[str, Any]]:
    """The runs of one ``(model, dataset)``, in their order."""
    return [r for r in runs if group_key(r)[:2] == pair]


def pair_text(pair: tuple[str, str]) -> str:
    """``'`resnet20` on `cifar10`'``, the words a report names a model and its data with."""
    return f"`{pair[0]}` on `{pair[1]}`"


def pair_slug(pair: tuple[str, str], limit: int = 40) -> str:
    """A file-name part for a ``(model, dataset)``: letters, digits and ``.+-`` only, at most ``limit``
    characters (the end is kept: a model path's last folder names it best)."""
    slug = re.sub(r"[^A-Za-z0-9.+-]+", "_", f"{pair[0]}_{pair[1]}").strip("_")
    return slug[-limit:].lstrip("_") or "run"


def drop_duplicate_seeds(
    runs: Sequence[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], list[tuple[Mapping[str, Any], Mapping[str, Any]]]]:
    """``(kept, dropped)``: ``runs`` less the repeats of a (group, seed), and ``(dropped run, the run kept
    instead)`` pairs. Of the runs sharing a group and seed, the first by folder path is kept; ``kept``
    keeps the order of ``runs``. A run with no recorded seed is never taken for a duplicate."""
    first: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for run in sorted(runs, key=lambda r: str(r["path"])):
        if run.get("seed") is not None:
            first.setdefault((*group_key(run), str(run["seed"])), run)
    kept, dropped = [], []
    for run in runs:
        winner = run if run.get("seed") is None else first[(*group_key(run), str(run["seed"]))]
        if winner is run:
            kept.append(run)
        else:
            dropped.append((run, winner))
    return kept, dropped


def duplicates_note(dropped: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> list[str]:
    """Markdown lines naming every dropped duplicate and the run kept in its place (none when no duplicates)."""
    if not dropped:
        return []
    lines = [
        f"**Duplicate seeds: {len(dropped)} job(s) not counted.** Each repeats the model, data, method, ratio, "
        "fine-tuning LR and seed of an earlier folder (by path), so it is one result recorded twice, not "
        "another seed:"
    ]
    lines += [f"- `{run['path']}` (seed {run['seed']}): not counted, same as `{kept['path']}`" for run, kept in dropped]
    return lines
