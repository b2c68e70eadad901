"""The experiment grid of a recipe: seeds x methods x ratios x fine-tuning LRs, with CLI filters.

Each point has a stable folder name ``{method}__r{ratio}__lr{lr}__s{seed}`` so that re-running a
recipe finds (and skips) finished jobs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Sequence

from tpp.errors import ConfigError
from tpp.pruning.presets import FAST_LENGTH_DIVISOR, FAST_REG_STEP_FACTOR, fast_options
from tpp.recipes.recipe import Recipe

# `--fast` is the pruning core's "fast" schedule preset (tpp.pruning.presets): lambda grows 10x faster,
# 10x shorter stabilisation, for users who cannot afford the paper's 110k iterations. It deviates
# from the paper. The names stay importable from here.
FAST_STABILIZE_DIVISOR = FAST_LENGTH_DIVISOR
__all__ = [
    "FAST_REG_STEP_FACTOR",
    "FAST_STABILIZE_DIVISOR",
    "GridPoint",
    "build_grid",
    "lr_labels",
    "method_options",
    "ratio_label",
]


@dataclass(frozen=True)
class GridPoint:
    """One pruning job of a recipe."""

    method: str
    ratio_index: int
    ratio_entry: float | str  # as written in prune.ratios
    ratio: str  # what the pruner receives (ratio_pattern applied)
    ratio_label: str  # short, file-name safe
    lr_index: int
    lr: str  # fine-tuning schedule
    lr_label: str
    seed: int

    @property
    def folder(self) -> str:
        """Job folder name inside the recipe's output directory."""
        return f"{self.method}__r{self.ratio_label}__lr{self.lr_label}__s{self.seed}"

    def describe(self) -> dict[str, Any]:
        """The JSON record of the point, stored as ``run.json`` next to the job's report."""
        return {
            "method": self.method,
            "ratio": self.ratio,
            "ratio_entry": self.ratio_entry,
            "ratio_label": self.ratio_label,
            "ratio_index": self.ratio_index,
            "lr": self.lr,
            "lr_label": self.lr_label,
            "lr_index": self.lr_index,
            "seed": self.seed,
        }


def ratio_label(entry: float | str) -> str:
    """``0.5 -> '0.5'``; a pattern string -> its ratios joined by '-' plus a short hash of the text."""
    if not isinstance(entry, str):
        return f"{entry:g}"
    values = re.findall(r":\s*([0-9.]+)", entry)
    digest = hashlib.sha1(entry.encode()).hexdigest()[:6]
    return "-".join(values) + "_" + digest


def lr_labels(lrs: Sequence[str]) -> list[str]:
    """The initial LR of each schedule (``'0:0.01,...' -> '0.01'``), made unique by index if needed."""
    from tpp.training import parse_lr_schedule

    labels = [f"{parse_lr_schedule(s).lr_at(0, 1000):g}" for s in lrs]
    if len(set(labels)) != len(labels):
        labels = [f"{i}-{label}" for i, label in enumerate(labels)]
    return labels


def method_options(recipe: Recipe, method: str, fast: bool = False) -> dict[str, Any]:
    """The recipe's options for ``method``; ``fast`` shortens its regularisation tenfold (lambda grows 10x
    faster, stabilisation and orthogonality phases are 10x shorter: :func:`tpp.pruning.presets.fast_options`)."""
    base = recipe.base_method(method)  # a variant: the method's options, then its own over them
    options = {
        **recipe.prune["options"].get(base, {}),
        **recipe.prune.get("variants", {}).get(method, {}).get("options", {}),
    }
    return fast_options(base, options) if fast else options


def build_grid(
    recipe: Recipe,
    *,
    seeds: Sequence[int] | None = None,
    ratios: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    lrs: Sequence[int] | None = None,
) -> list[GridPoint]:
    """All grid points, ordered seed -> ratio -> method -> LR, restricted by the optional filters.

    ``ratios`` items select prune.ratios entries by value (``0.8``), by expected speedup (``1.49x``)
    or by label; ``lrs`` are indices into finetune.lrs.
    """
    seed_list = _pick(recipe.seeds, seeds, "seed", lambda s, x: s == int(x))
    method_list = _pick(recipe.prune["methods"], methods, "method", lambda m, x: m == x)
    lr_idx = _pick(list(range(len(recipe.finetune["lrs"]))), lrs, "LR index", lambda i, x: i == int(x))
    entries = list(enumerate(recipe.prune["ratios"]))
    speedups = recipe.expected.get("speedups") or [None] * len(entries)
    chosen = _pick(entries, ratios, "ratio", lambda e, x: _ratio_matches(e[1], speedups[e[0]], str(x)))
    labels = lr_labels(recipe.finetune["lrs"])
    return [
        GridPoint(
            method,
            index,
            entry,
            recipe.ratio_spec(entry),
            ratio_label(entry),
            i,
            recipe.finetune["lrs"][i],
            labels[i],
            seed,
        )
        for seed in seed_list
        for index, entry in chosen
        for method in method_list
        for i in lr_idx
        if recipe.finetune["lr_methods"][i] is None or method in recipe.finetune["lr_methods"][i]
    ]


def _ratio_matches(entry: float | str, speedup: float | None, wanted: str) -> bool:
    wanted = wanted.strip()
    if wanted.endswith("x") and speedup is not None:
        try:
            return abs(float(wanted[:-1]) - speedup) < 1e-9
        except ValueError:
            return False
    if not isinstance(entry, str):
        try:
            return abs(float(wanted) - entry) < 1e-9
        except ValueError:
            return False
    return wanted in (entry, ratio_label(entry))


def _pick(items: list, wanted: Sequence | None, what: str, match) -> list:
    if wanted is None:
        return list(items)
    picked = []
    for value in wanted:
        try:
            hits = [item for item in items if match(item, value)]
        except ValueError:
            hits = []
        if not hits:
            shown = ", ".join(_show(i) for i in items)
            raise ConfigError(f"{what} {value!r} is not in the recipe; choose from {shown}")
        picked.extend(h for h in hits if h not in picked)
    return [item for item in items if item in picked]  # keep the recipe's order


def _show(item: Any) -> str:
    if isinstance(item, tuple):  # a (index, ratio entry) pair
        return str(item[1]) if not isinstance(item[1], str) else ratio_label(item[1])
    return str(item)
