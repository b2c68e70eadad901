"""PNG plots of pruning runs (matplotlib's object API with the Agg canvas: no global backend switch).

* :func:`plot_accuracy_vs_epoch`: test top-1 and, when logged, the mean JSV against the fine-tuning
  epoch, one curve per method (mean over seeds), one panel column per fine-tuning LR, like the
  paper's MLP figure. Epoch 0 is the model right after removal.
* :func:`plot_accuracy_vs_speedup`: best fine-tuned top-1 (mean ± std over seeds) against the
  FLOPs speedup, one line per method, one panel per fine-tuning LR.
* :func:`plot_job_curves` and :func:`plot_pruned_layers`: one prune job's epochs through its three
  phases, and its kept / pruned channels per layer (``curves.png`` and ``layers.png`` of its folder).
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
    return atomic_write(
        path, lambda handle: figure.savefig(handle, format="png", dpi=dpi, metadata={"Software": software})
    )


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
    has_jsv = any(
        "jsv_mean" in record for r in runs for record in (r["report"].get("finetune") or {}).get("history") or []
    )
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
                    ax.plot(
                        epochs,
                        values,
                        styles[ratio],
                        color=colours[method],
                        marker="." if len(epochs) < 20 else None,
                        label=label,
                    )
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
            points = sorted(
                (g["speedup"][0], g["best_top1"][0], g["best_top1"][1] or 0.0)
                for g in groups
                if g["lr"] == lr
                and g["method"] == method
                and g["speedup"][0] is not None
                and g["best_top1"][0] is not None
            )
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


def plot_job_curves(report: Mapping[str, Any], path: str | Path) -> Path | None:
    """Test top-1 (perplexity for a language model) and train loss of one prune job per epoch, through
    its phases: the base model at epoch 0, the regularisation epochs, the model right after removal
    (drawn at the last regularisation epoch: removal takes no epoch) and the fine-tuning epochs.
    None if the job has no epoch to draw."""
    from matplotlib.ticker import MaxNLocator

    regularization = report.get("regularization") or {}
    regularized = [r for r in regularization.get("history") or [] if isinstance(r.get("epoch"), int)]
    tuned = [r for r in (report.get("finetune") or {}).get("history") or [] if isinstance(r.get("epoch"), int)]
    if not regularized and not tuned:
        return None
    lm = "perplexity" in (report.get("accuracy_after_removal") or {})
    key, start = ("test_perplexity", "perplexity") if lm else ("test_top1", "top1")
    removal = int(regularization.get("epochs") or len(regularized))  # x of the removal point
    end = removal + len(tuned)
    figure, axes = new_figure(2, 1, 6.4, 2.8)
    quality, loss = axes[0][0], axes[1][0]
    before = (report.get("accuracy_before") or {}).get(start)
    after = (report.get("accuracy_after_removal") or {}).get(start)
    # regularisation starts from the base model; a one-shot removal jumps from it (no line then)
    xs = ([0] if removal > 0 else []) + [r["epoch"] + 1 for r in regularized] + [removal]
    ys = ([before] if removal > 0 else []) + [r.get(key) for r in regularized] + [after]
    xs += [removal + r["epoch"] + 1 for r in tuned]
    ys += [r.get(key) for r in tuned]
    points = [(x, y) for x, y in zip(xs, ys) if isinstance(y, (int, float))]
    if points:
        quality.plot(
            *zip(*points),
            marker="." if len(points) < 40 else None,
            color="C0",
            label="test perplexity" if lm else "test top-1",
        )
    if isinstance(before, (int, float)):
        quality.plot([0], [before], "s", color="0.4", label="base model")
    if isinstance(after, (int, float)):
        quality.plot([removal], [after], "X", color="C3", markersize=8, label="right after removal")
    if lm and points and max(y for _, y in points) > 10 * min(y for _, y in points):
        quality.set_yscale("log")  # a perplexity right after removal can be orders above the rest
    for stage, offset, colour in ((regularized, 1, "C1"), (tuned, removal + 1, "C2")):
        segment = [
            (r["epoch"] + offset, r["train_loss"]) for r in stage if isinstance(r.get("train_loss"), (int, float))
        ]
        if segment:
            loss.plot(*zip(*segment), marker="." if len(segment) < 40 else None, color=colour)
    quality.set_ylabel("test perplexity" if lm else "test top-1 (%)")
    loss.set_ylabel("train loss")
    loss.set_xlabel("epoch of the job (0 = base model)")
    for axis in (quality, loss):
        for low, high, colour, name in ((0, removal, "C1", "regularise"), (removal, end, "C2", "fine-tune")):
            if high > low:
                axis.axvspan(low, high, color=colour, alpha=0.08)
                # accuracy lives near the top of its panel: its labels go to the bottom
                y, align = (0.03, "bottom") if axis is quality and not lm else (0.97, "top")
                axis.text(
                    (low + high) / 2,
                    y,
                    name,
                    transform=axis.get_xaxis_transform(),
                    ha="center",
                    va=align,
                    bbox={"facecolor": "white", "alpha": 0.6, "edgecolor": "none"},
                )
        axis.axvline(removal, color="C3", linestyle="--", linewidth=1)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    quality.legend(fontsize="small")
    phases = ["regularise"] * (removal > 0) + ["remove (dashed line)"] + ["fine-tune"] * bool(tuned)
    quality.set_title(f"{report.get('method', 'prune job')}: {', '.join(phases)}")
    return save_png(figure, path, "tpp prune", dpi=100)


def plot_pruned_layers(report: Mapping[str, Any], path: str | Path) -> Path | None:
    """Kept and pruned channels of each prunable layer (``report["layers"]``) as stacked bars, first
    layer on top; None if the report lists no layer with a known width."""
    layers = [r for r in report.get("layers") or [] if isinstance(r.get("channels"), int) and r["channels"] > 0]
    if not layers:
        return None
    figure, axes = new_figure(1, 1, 6.4, 1.2 + 0.24 * len(layers))
    axis = axes[0][0]
    rows = range(len(layers))
    pruned = [int(r.get("pruned") or 0) for r in layers]
    kept = [r["channels"] - p for r, p in zip(layers, pruned)]
    axis.barh(rows, kept, color="C0", label="kept")
    axis.barh(rows, pruned, left=kept, color="C3", alpha=0.6, label="pruned")
    axis.set_yticks(list(rows), [r["name"] for r in layers], fontsize="small" if len(layers) < 40 else "x-small")
    axis.invert_yaxis()  # the first layer on top, as in the model
    axis.set_xlabel("channels (attention: key/value heads)" if any(r.get("heads") for r in layers) else "channels")
    axis.set_title(
        f"{report.get('method', 'prune job')}: {sum(pruned)} of {sum(r['channels'] for r in layers)} "
        f"channels pruned in {sum(1 for p in pruned if p)} of {len(layers)} layers"
    )
    axis.grid(alpha=0.3, axis="x")
    axis.legend(fontsize="small", loc="lower right")
    return save_png(figure, path, "tpp prune", dpi=100)
