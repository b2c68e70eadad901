"""``--dry-run``: the grid, the FLOPs speedup of each ratio (by counting) and whether the inputs can be read.

Nothing is trained or written. A checkpoint that is given but cannot be loaded into the recipe's
model is an error; data that cannot be read here is reported on its own line, because a recipe
is often planned on another machine than the one that has the data.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

from tpp.recipes.base import fresh_model, recipe_info
from tpp.recipes.grid import GridPoint, method_options, ratio_label
from tpp.recipes.schema import Recipe


def counting_info(recipe: Recipe, data_dir: str | None = None) -> tuple[Any, bool]:
    """``(info, readable)``: the :func:`~tpp.recipes.base.recipe_info` of the data, or, for an image
    folder that cannot be read here, a stand-in with its options' channels and size and 10 classes
    (FLOPs speedups hardly depend on the classes; the recipe may be planned where the data is not)."""
    from tpp.errors import DataError

    try:
        return recipe_info(recipe, data_dir), True
    except DataError:
        options = recipe.image_options()
        if options is None:
            raise
        return SimpleNamespace(num_classes=10, in_channels=options.channels, image_size=options.image_size), False


def recipe_speedups(
    recipe: Recipe, entries: Sequence[float | str] | None = None, batch_size: int = 1, data_dir: str | None = None
) -> list[dict[str, Any]]:
    """FLOPs speedup and parameter reduction of each ratio entry (L1 removal on a random model; no data
    is read, except an image folder's class names)."""
    from tpp.metrics.counting import count
    from tpp.models import example_inputs
    from tpp.pruning import L1Pruner

    info, _ = counting_info(recipe, data_dir)
    model = fresh_model(recipe, info=info).eval()
    inputs = example_inputs(
        recipe.model, in_channels=info.in_channels, batch_size=batch_size, image_size=info.image_size
    )
    base = count(model, inputs)
    rows = []
    for entry in recipe.prune["ratios"] if entries is None else entries:
        spec = recipe.ratio_spec(entry)
        pruned = L1Pruner(
            copy.deepcopy(model),
            inputs,
            ratio=spec,
            scope=recipe.prune["scope"],
            ignored_layers=recipe.prune["ignore"] or None,
        ).prune()
        counts = count(pruned, inputs)
        rows.append(
            {
                "entry": entry,
                "ratio": spec,
                "label": ratio_label(entry),
                "speedup": counts.speedup_over(base),
                "params_reduction": counts.params_reduction(base),
                "flops": counts.flops,
                "params": counts.params,
                "base_flops": base.flops,
                "base_params": base.params,
            }
        )
    return rows


def describe_grid(
    recipe: Recipe, grid: Sequence[GridPoint], out: Path, fast: bool = False, data_dir: str | None = None
) -> str:
    """The ``--dry-run`` text: the jobs, their state, and the FLOPs speedup of every ratio."""
    started = time.perf_counter()
    entries = list(dict.fromkeys((p.ratio_index, p.ratio_entry) for p in grid))
    expected = recipe.expected.get("speedups") or [None] * len(recipe.prune["ratios"])
    paper = f" ({recipe.paper})" if recipe.paper else ""
    lines = [
        f"recipe {recipe.name}{paper}: {len(grid)} jobs into {out}",
        f"model {recipe.model} on {recipe.dataset}; base: "
        + (
            f"pretrain {recipe.base['epochs']} epochs"
            if recipe.base
            else f"checkpoint {recipe.checkpoint or '(required: --checkpoint FILE)'}"
        ),
        "method options"
        + (" (--fast)" if fast else "")
        + ": "
        + "; ".join(f"{m} {method_options(recipe, m, fast) or 'defaults'}" for m in recipe.prune["methods"]),
        "fine-tuning LRs: "
        + ", ".join(
            f"[{i}] {s}" + (f" ({', '.join(m)} only)" if m else "")
            for i, (s, m) in enumerate(zip(recipe.finetune["lrs"], recipe.finetune["lr_methods"]))
        ),
        "ratios:",
    ]
    for (index, _), row in zip(entries, recipe_speedups(recipe, [e for _, e in entries], data_dir=data_dir)):
        paper = f" (paper {expected[index]:.2f}x)" if expected[index] is not None else ""
        lines.append(
            f"  {row['label']:>12}  {row['ratio']}: FLOPs speedup {row['speedup']:.2f}x{paper}, "
            f"params -{100 * row['params_reduction']:.2f}%"
        )
    lines.append("jobs:")
    for p in grid:
        state = "done" if (out / p.folder / "report.json").is_file() else "todo"
        lines.append(f"  [{state}] {p.folder}")
    lines.append(f"(counted in {time.perf_counter() - started:.1f}s; nothing was trained)")
    return "\n".join(lines)


def check_inputs(recipe: Recipe, checkpoint: str | None, data_dir: str | None) -> list[str]:
    """Lines saying whether the base checkpoint and the data can be read (no download, no training).

    Raises:
        TPPError: a checkpoint is given but is unreadable or of another architecture.
    """
    from tpp.checkpoints import load_checkpoint, load_model_weights
    from tpp.data import build_loaders
    from tpp.errors import TPPError

    lines = ["inputs:"]
    path = checkpoint or recipe.checkpoint
    info, readable = counting_info(recipe, data_dir)
    if path and not readable:
        lines.append(f"  checkpoint {path}: not checked (its classes are those of the image folder, unread here)")
    elif path:
        load_model_weights(fresh_model(recipe, info=info), load_checkpoint(path), path)
        lines.append(f"  checkpoint {path}: loads into {recipe.model}")
    elif recipe.base is None:
        lines.append("  checkpoint: not given (required: --checkpoint FILE)")
    else:
        lines.append(f"  checkpoint: none needed (the base model is pretrained for {recipe.base['epochs']} epochs)")
    try:
        train, test, _ = build_loaders(
            recipe.dataset,
            data_dir if data_dir is not None else recipe.data_dir,
            batch_size=recipe.batch_size,
            test_batch_size=recipe.test_batch_size,
            num_workers=0,
            image_options=recipe.image_options(),
        )
        next(iter(train))
        next(iter(test))
        lines.append(f"  data: {recipe.dataset} can be read (a batch of each split loaded)")
    except TPPError as error:
        lines.append(f"  data: {recipe.dataset} cannot be read here: {' '.join(str(error).split())}")
    return lines
