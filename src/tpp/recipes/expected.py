"""The ``expected:`` section of a recipe: the paper's numbers, validated and turned into report rows.

Accuracy keys are ``method`` or ``method@I`` (I = index into finetune.lrs); a value is a list
aligned with prune.ratios (null = not reported) or one number when the paper does not state the
ratio (the report then compares it with every ratio of the grid).
"""

from __future__ import annotations

from typing import Any, Mapping

from tpp.errors import ConfigError
from tpp.recipes import checks
from tpp.recipes.grid import lr_labels, ratio_label
from tpp.recipes.recipe import Recipe

EXPECTED_KEYS = {"source", "unpruned_top1", "speedups", "params_reduction", "top1", "top1_std", "jsv_after_prune"}


def validate_expected(data: Any, where: str, recipe: Recipe) -> dict[str, Any]:
    """Check the ``expected`` mapping against the recipe's methods, ratios and LRs."""
    checks.keys(data, EXPECTED_KEYS, where)
    n = len(recipe.prune["ratios"])
    out: dict[str, Any] = {}
    if "source" in data:
        out["source"] = checks.text(data["source"], f"{where}: source")
    if data.get("unpruned_top1") is not None:
        out["unpruned_top1"] = checks.number(data["unpruned_top1"], f"{where}: unpruned_top1")
    for key in ("speedups", "params_reduction"):
        if key in data:
            out[key] = checks.aligned(data[key], n, f"{where}: {key}")
    for key in ("top1", "top1_std", "jsv_after_prune"):
        table = data.get(key) or {}
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: {key} must map 'method' or 'method@LR-index' to numbers")
        out[key] = {}
        for label, value in table.items():
            method, _, lr = str(label).partition("@")
            if method not in recipe.prune["methods"]:
                raise ConfigError(f"{where}: {key}: {label!r} names a method not in prune.methods")
            if lr and not (lr.isdigit() and int(lr) < len(recipe.finetune["lrs"])):
                raise ConfigError(f"{where}: {key}: {label!r}: '@' must be followed by an index into finetune.lrs")
            out[key][str(label)] = (
                checks.aligned(value, n, f"{where}: {key}: {label}")
                if isinstance(value, list)
                else checks.number(value, f"{where}: {key}: {label}")
            )
    return out


def paper_rows(recipe: Recipe) -> tuple[list[dict[str, Any]], dict[str, dict[str, float | None]]]:
    """The recipe's ``expected`` numbers as reporting rows, and the paper speedups per ratio label."""
    expected = recipe.expected
    labels = [ratio_label(e) for e in recipe.prune["ratios"]]
    lrs = lr_labels(recipe.finetune["lrs"])
    rows: dict[tuple, dict[str, Any]] = {}
    for key in ("top1", "top1_std"):
        for name, value in expected.get(key, {}).items():
            method, _, lr = name.partition("@")
            values = value if isinstance(value, list) else [value]
            for i, v in enumerate(values):
                if v is None:  # not reported by the paper
                    continue
                ratio = labels[i] if isinstance(value, list) else None
                row = rows.setdefault(
                    (method, ratio, lr), {"method": method, "ratio": ratio, "lr": lrs[int(lr)] if lr else None}
                )
                row[key] = v
    for method, value in expected.get("jsv_after_prune", {}).items():
        for row in [r for r in rows.values() if r["method"] == method] or [
            rows.setdefault((method, None, ""), {"method": method, "ratio": None, "lr": None})
        ]:
            row["jsv_after_prune"] = value
    if not expected.get("speedups") and not expected.get("params_reduction"):
        return list(rows.values()), {}
    speedups = {
        label: {"speedup": s, "params_reduction": p}
        for label, s, p in zip(
            labels,
            expected.get("speedups") or [None] * len(labels),
            expected.get("params_reduction") or [None] * len(labels),
        )
    }
    return list(rows.values()), speedups
