"""PNG plots of pruning runs (matplotlib's object API with the Agg canvas: no global backend switch).

* :func:`plot_accuracy_vs_epoch`: test top-1 and, when logged, the mean JSV against the fine-tuning
  epoch, one curve per method (mean over seeds), one panel column per fine-tuning LR, like the
  paper's MLP figure. Epoch 0 is the model right after removal.
* :func:`plot_accuracy_vs_speedup`: best fine-tuned top-1 (mean ± std over seeds) against the
  FLOPs speedup, one line per method, one panel per fine-tuning LR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from tpp.reporting.collect import value
from tpp.reporting.tables import aggregate, mean_std
from tpp.util.atomic import atomic_write


def new_figure(rows: int, cols: int, width: float = 4.2, height: float = 3.2):
    """A figure on its own Agg canvas (no pyplot, no global backend) and its ``rows x cols`` axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * cols, height * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, cols, squeeze=False)
    return figure, axes


def _colours(runs: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    # one colour per method across all panels, so the eye can follow a method between them
    return {m: f"C{i % 10}" for i, m in enumerate(dict.fromkeys(r["method"] for r in runs))}


def save_png(figure, path: str | Path, software: str = "tpp report", dpi: int = 110) -> Path:
    """Write ``figure`` to ``path`` atomically; the Software chunk marks the file as tpp's, so a later
    run may replace it (:mod:`tpp.util.owned`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=dpi,
                                                            metadata={"Software": software}))


def plot_jsv_curve(report: Mapping[str, Any], path: str | Path) -> Path | None:
    """Mean JSV against fine-tuning epoch (epoch 0 = right after removal) of one prune job, if measured."""
    history = (report.get("finetune") or {}).get("history", [])
    points = [h["jsv_mean"] for h in history if "jsv_mean" in h]
    if not points or "jsv_after_prune" not in report:
        return None
    figure, axes = new_figure(1, 1, 5, 3.5)
    axis = axes[0][0]
    curve = [report["jsv_after_prune"]["mean"]] + points
    axis.plot(range(len(curve)), curve, marker="o")
    axis.set_xlabel("fine-tuning epoch (0 = right after removal)")
    axis.set_ylabel("mean JSV")
    axis.set_title(f"{report['method']}: trainability during fine-tuning")
    axis.grid(alpha=0.3)
    return save_png(figure, path, "tpp prune", dpi=100)


def _curve(members: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Mean over seeds per epoch; epoch 0 = right after removal, epoch e = after fine-tuning epoch e."""
    start = {"test_top1": ("accuracy_after_removal", "top1"), "jsv_mean": ("jsv_after_prune", "mean")}[key]
    by_epoch: dict[int, list[float]] = {}
    for run in members:
        first = value(run, *start)
        if first is not None:
            by_epoch.setdefault(0, []).append(first)
        for record in (run["report"].get("finetune") or {}).get("history") or []:
            if isinstance(record.get(key), (int, float)) and isinstance(record.get("epoch"), int):
                by_epoch.setdefault(record["epoch"] + 1, []).append(float(record[key]))
    epochs = sorted(by_epoch)
    return epochs, [mean_std(by_epoch[e])[0] for e in epochs]


def plot_accuracy_vs_epoch(runs: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write the accuracy (and mean JSV) vs fine-tuning epoch figure to ``path`` (PNG)."""
    from matplotlib.ticker import MaxNLocator

    lrs = list(dict.fromkeys(r["lr"] for r in runs))
    several_ratios = len({r["ratio"] for r in runs}) > 1
    # the JSV row needs per-epoch values; the point right after pruning alone is in the tables
    has_jsv = any("jsv_mean" in record for r in runs for record in (r["report"].get("finetune") or {}).get("history") or [])
    keys = ["test_top1"] + (["jsv_mean"] if has_jsv else [])
    figure, axes = new_figure(len(keys), len(lrs))
    colours = _colours(runs)
    styles = {ratio: style for ratio, style in zip(dict.fromkeys(r["ratio"] for r in runs), ["-", "--", ":", "-."] * 8)}
    for col, lr in enumerate(lrs):
        groups: dict[tuple[str, str], list] = {}
        for run in runs:
            if run["lr"] == lr:
                groups.setdefault((run["method"], run["ratio"]), []).append(run)
        for row, key in enumerate(keys):
            ax = axes[row][col]
            for (method, ratio), members in groups.items():
                epochs, values = _curve(members, key)
                if epochs:
                    label = f"{method} (ratio {ratio})" if several_ratios else method
                    ax.plot(epochs, values, styles[ratio], color=colours[method],
                            marker="." if len(epochs) < 20 else None, label=label)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("fine-tuning epoch (0 = right after pruning)")
            ax.set_ylabel("test top-1 (%)" if key == "test_top1" else "mean JSV")
            ax.set_title(f"fine-tuning LR {lr}")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize="small")
    return save_png(figure, path)


def plot_accuracy_vs_speedup(runs: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write the best top-1 vs FLOPs speedup figure to ``path`` (PNG)."""
    groups = aggregate(runs)
    lrs = list(dict.fromkeys(g["lr"] for g in groups))
    figure, axes = new_figure(1, len(lrs))
    colours = _colours(runs)
    for col, lr in enumerate(lrs):
        ax = axes[0][col]
        for method in dict.fromkeys(g["method"] for g in groups):
            points = sorted((g["speedup"][0], g["best_top1"][0], g["best_top1"][1] or 0.0) for g in groups
                            if g["lr"] == lr and g["method"] == method
                            and g["speedup"][0] is not None and g["best_top1"][0] is not None)
            if points:
                xs, ys, errs = zip(*points)
                ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, color=colours[method], label=method)
        ax.set_xscale("log")
        ax.set_xlabel("FLOPs speedup (x)")
        ax.set_ylabel("best test top-1 after fine-tuning (%)")
        ax.set_title(f"fine-tuning LR {lr}")
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    return save_png(figure, path)
