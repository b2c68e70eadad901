"""What ``tpp prune`` prints: the dry run's plan with its time estimate, and the final summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

# pruned units listed by name before "... and N more"
LISTED_UNITS = 8


def duration(seconds: float) -> str:
    """``"~2.5 h"``, ``"~14 min"``, ``"~40 s"``."""
    if seconds >= 5400:
        return f"~{seconds / 3600:.1f} h"
    if seconds >= 90:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds:.0f} s"


def pruned_units(pruned: Mapping[str, int], limit: int = LISTED_UNITS) -> str:
    """``"layer1.0.conv1 (8), layer1.1.conv1 (8) and 4 more"``: channels removed per unit, by name."""
    items = [f"{name} ({n})" for name, n in pruned.items() if n]
    if not items:
        return "nothing"
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def dry_run_text(args: Any, plan: Mapping[str, Any], batches_per_epoch: int, step_seconds: float, out: Path) -> str:
    """The dry run's report: what loads, what would be removed, how long the three stages would take."""
    iterations, ft_epochs = int(plan["iterations"]), int(args.ft_epochs)
    budget = getattr(args, "budget_steps", None)
    if budget is not None:  # fine-tuning gets what the regularisation leaves
        ft_epochs = -(-max(budget - iterations, 0) // max(batches_per_epoch, 1))
    steps = iterations + ft_epochs * batches_per_epoch if budget is None else budget
    stages = []
    if iterations:
        bound = "at most " if plan.get("iterations_are_bound") else ""
        epochs = iterations / max(batches_per_epoch, 1)
        stages.append(
            f"{bound}{iterations:,} regularisation iterations (~{epochs:,.0f} epochs of "
            f"{batches_per_epoch:,} batches here)"
        )
    tuning = ft_epochs * batches_per_epoch if budget is None else max(budget - iterations, 0)
    stages.append(
        f"{ft_epochs} fine-tuning epochs ({tuning:,} steps"
        + (f"; --budget-steps {budget:,} in all)" if budget is not None else ")")
    )
    estimate = (
        (
            f"; {duration(steps * step_seconds)} at the measured {step_seconds * 1000:.0f} ms per training step "
            "(evaluation and the regularisers' own work not included)"
        )
        if step_seconds > 0
        else ""
    )
    fast = (
        (
            " (--fast: 10x shorter than the paper's)"
            if getattr(args, "fast", False)
            else "; --fast shortens the regularisation 10x"
        )
        if iterations
        else ""
    )
    source = args.checkpoint or args.weights or ("pretrained " + str(args.model))
    return "\n".join(
        [
            f"dry run: {source} loads as {args.model} and the {args.dataset} data can be read",
            f"{args.method} would remove {plan['removes']} (params {plan['counts_before']['params']:,} -> "
            f"{plan['counts_after']['params']:,}, FLOPs speedup {plan['speedup']:.2f}x): {pruned_units(plan['pruned'])}",
            f"the job: {', '.join(stages)}{estimate}{fast}",
            f"it would write to {out}; nothing was trained or written",
        ]
    )


def summary_line(method: str, report: dict[str, Any], out: Path) -> str:
    """The result: quality before / after removal / after fine-tuning (the last epoch, which the final
    model file holds; the best epoch too), size, speedup, the pruned layers and where the files are."""
    ft = report["finetune"]
    jsv = f"mean JSV {report['jsv_after_prune']['mean']:.4g} after removal; " if "jsv_after_prune" in report else ""
    layers = report.get("layers")
    pruned = (
        f"; pruned: {pruned_units({layer['name']: layer['pruned'] for layer in layers})}"
        if isinstance(layers, list)
        else ""
    )
    final = out / "pruned_model.pt"
    if "perplexity" in report["accuracy_before"]:
        last = ft.get("last_perplexity")
        after = "n/a" if last is None else f"{last:.3f}"
        return (
            f"{method}: perplexity {report['accuracy_before']['perplexity']:.3f} before, "
            f"{report['accuracy_after_removal']['perplexity']:.3f} after removal, {after} after fine-tuning "
            f"({report['train_steps']['total']} training steps); {jsv}"
            f"params {report['counts_before']['params']:,} -> {report['counts_after']['params']:,}{pruned}; "
            f"final model {final}; guide {out / 'README.txt'}"
        )
    if ft["last_top1"] is None:
        tuned = "no fine-tuning"
    else:
        from tpp.jobs.run_guide import best_epoch

        best = best_epoch(report)  # the epoch finetune/best.pt holds, as the run folder's guide names it
        at = f" at epoch {int(best['epoch']) + 1}" if best is not None else ""  # records count from 0
        tuned = f"{ft['last_top1']:.2f} after {ft['epochs']} fine-tuning epochs (best {ft['best_top1']:.2f}{at})"
    return (
        f"{method}: top-1 {report['accuracy_before']['top1']:.2f} before, "
        f"{report['accuracy_after_removal']['top1']:.2f} after removal, {tuned}; {jsv}"
        f"params {report['counts_before']['params']:,} -> {report['counts_after']['params']:,}, "
        f"FLOPs speedup {report['speedup']:.2f}x{pruned}; final model {final} (last epoch); "
        f"guide {out / 'README.txt'}"
    )
