"""The markdown report of a recipe run: its finished jobs under ``<out>`` in the recipe's order,
beside the paper's numbers (:mod:`tpp.recipes.expected`) and the unpruned base models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tpp.recipes.schema import Recipe


def read_json_dict(path: Path) -> dict[str, Any] | None:
    """A JSON object file (a job's run.json or report.json, a base's base.json), or None if it is missing,
    unreadable or not an object."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_recipe_report(recipe: Recipe, out: Path, path: str | Path, overwrite: bool = False) -> Path:
    """Collect this recipe's finished jobs under ``out`` and write the markdown report at ``path``
    (a file there that tpp did not write is replaced only with ``overwrite``)."""
    from tpp.reporting import collect, write_report

    runs = [r for r in collect([out]) if r["run"].get("recipe") in (None, recipe.name)]
    methods = recipe.prune["methods"]
    # the recipe's order (LR, method, ratio, seed), which the tables and plots keep
    runs.sort(
        key=lambda r: (
            r["run"].get("lr_index", 0),
            methods.index(r["method"]) if r["method"] in methods else len(methods),
            r["run"].get("ratio_index", 0),
            str(r["seed"]),
        )
    )
    from tpp.recipes.expected import paper_rows

    rows, speedups = paper_rows(recipe)
    bases = []
    for seed in recipe.seeds:
        info = read_json_dict(out / f"base_s{seed}" / "base.json")
        if info and info.get("last_top1") is not None:
            bases.append(f"seed {seed}: {info['last_top1']:.2f}%")
    intro = [recipe.description.strip(), ""] if recipe.description.strip() else []
    intro += [f"- Reproduces: {recipe.paper}"] if recipe.paper else []
    intro.append(f"- Model / data: `{recipe.model}` on `{recipe.dataset}`")
    facts = [
        f"Hardware: {recipe.hardware}" if recipe.hardware else "",
        f"expected wall time: {recipe.expected_wall_time}" if recipe.expected_wall_time else "",
    ]
    intro += ["- " + "; ".join(f for f in facts if f)] if any(facts) else []
    intro.append(f"- Recipe: `{recipe.path or recipe.name}`; job folders: `{out}`")
    if bases:
        intro.append("- Unpruned base model, test top-1 after pretraining: " + ", ".join(bases))
    if recipe.expected.get("unpruned_top1") is not None:
        intro.append(f"- Paper's unpruned top-1: {recipe.expected['unpruned_top1']:.2f}%")
    if recipe.notes.strip():
        intro += ["", recipe.notes.strip()]
    return write_report(
        runs,
        path,
        f"{recipe.name}: {recipe.paper}" if recipe.paper else recipe.name,
        paper_rows=rows,
        paper_speedups=speedups,
        intro="\n".join(intro),
        overwrite=overwrite,
    )
