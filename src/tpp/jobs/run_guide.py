"""``README.txt`` of a prune job's folder: which file is the result, what every other file is, and the
commands that evaluate, export or resume it. Built from the report alone (no wall times, no absolute
paths beyond the ``out`` given), so a killed and resumed job writes the same guide as an uninterrupted one."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Iterable, Mapping

README = "README.txt"
# how many pruned layers the guide names before pointing at report.json
MAX_LAYERS = 12


def run_guide(out: Path, report: Mapping[str, Any], present: Iterable[str] | None = None) -> str:
    """The text of ``README.txt`` for the prune job in ``out`` with this ``report``.

    ``present``: the files (relative to ``out``) to describe; by default those that exist in ``out``,
    plus ``report.json`` and ``README.txt``, which the job writes with the guide."""
    out = Path(out)
    files = _describe_files(report)
    if present is None:
        present = [name for name in files if (out / name).is_file() or name in ("report.json", README)]
    present = set(present)
    lines = [
        f"tpp prune job: method {report.get('method')}, {_stages(report)}.",
        "",
        "THE FINAL MODEL",
        f"  pruned_model.pt  {_final(report)}",
    ]
    best = best_epoch(report)
    if best is not None:
        same = " (the last epoch is the best)" if best is _history(report)[-1] else ""
        lines.append(
            f"  The best fine-tuning epoch was {best['epoch'] + 1}, {_quality(best)}{same}; "
            "finetune/best.pt holds it (a training checkpoint)."
        )
    lines += [
        "",
        "RESULTS",
        *("  " + line for line in _results(report)),
        "",
        "FILES (only pruned_model.pt is the result; the other model files are for resuming and inspection)",
    ]
    width = max(len(name) for name in files)
    lines += [f"  {name.ljust(width)}  {text}" for name, text in files.items() if name in present]
    lines += ["", "COMMANDS", *("  " + line for line in _commands(out, report)), ""]
    return "\n".join(lines)


def _stages(report: Mapping[str, Any]) -> str:
    if not report.get("pruned_indices") and "pruned_indices" in report:
        return "nothing removed (ratio 0): the dense model fine-tuned with the job's budget, a control"
    if report.get("regularization"):
        return "regularise -> remove channels -> fine-tune"
    return "remove channels (one-shot, no regularisation) -> fine-tune"


def _quality(record: Mapping[str, Any] | None, perplexity: str = "test_perplexity", top1: str = "test_top1") -> str:
    """'top-1 91.20', or for a language model 'perplexity 13.560 (next-token top-1 41.20)'."""
    record = record or {}
    top = record.get(top1)
    top_text = f"{top:.2f}" if isinstance(top, (int, float)) else "n/a"
    if isinstance(record.get(perplexity), (int, float)):
        return f"perplexity {record[perplexity]:.3f} (next-token top-1 {top_text})"
    return f"top-1 {top_text}"


def _history(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in (report.get("finetune") or {}).get("history") or [] if isinstance(r.get("epoch"), int)]


def _final(report: Mapping[str, Any]) -> str:
    history = _history(report)
    if not history:
        after = _quality(report.get("accuracy_after_removal"), "perplexity", "top1")
        return f"the pruned model right after removal (no fine-tuning epochs), {after}"
    total = (report.get("config") or {}).get("ft_epochs") or len(history)
    dense = report.get("pruned_indices") == {}
    what = "the fine-tuned model (nothing was pruned)" if dense else "the fine-tuned pruned model"
    return f"{what}: last fine-tuning epoch {history[-1]['epoch'] + 1} of {total}, {_quality(history[-1])}"


def best_epoch(report: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The record of the epoch finetune/best.pt holds: the first with the highest test top-1 (as the trainer)."""
    scored = [r for r in _history(report) if isinstance(r.get("test_top1"), (int, float))]
    return max(scored, key=lambda r: r["test_top1"]) if scored else None  # max keeps the first of equals


def _results(report: Mapping[str, Any]) -> list[str]:
    before, after = report.get("counts_before") or {}, report.get("counts_after") or {}
    lines = [
        f"before pruning: {_quality(report.get('accuracy_before'), 'perplexity', 'top1')}; right after removal: "
        f"{_quality(report.get('accuracy_after_removal'), 'perplexity', 'top1')}"
    ]
    if "params" in before and "params" in after:
        speedup = report.get("speedup")
        lines.append(
            f"params {before['params']:,} -> {after['params']:,}"
            + (f", FLOPs speedup {speedup:.2f}x" if isinstance(speedup, (int, float)) else "")
        )
    layers = [r for r in report.get("layers") or [] if r.get("pruned")]
    if not layers:
        lines.append("nothing was removed" if not report.get("pruned_indices") else "pruned layers: see report.json")
        return lines
    total = sum(int(r.get("channels") or 0) for r in report.get("layers") or [])
    lines.append(
        f"pruned {sum(r['pruned'] for r in layers)} of {total} channels in {len(layers)} of "
        f"{len(report.get('layers') or [])} layers:"
    )
    for row in layers[:MAX_LAYERS]:
        unit = " key/value heads" if row.get("heads") else ""
        lines.append(f"  {row['name']}: {row['pruned']} of {row.get('channels', '?')}{unit}")
    if len(layers) > MAX_LAYERS:
        lines.append(f'  ... and {len(layers) - MAX_LAYERS} more (report.json "layers", layers.png)')
    return lines


def _describe_files(report: Mapping[str, Any]) -> dict[str, str]:
    """Every file a prune job may write, in the order the guide lists them."""
    history = _history(report)
    last = f"fine-tuning epoch {history[-1]['epoch'] + 1}" if history else "the last fine-tuning epoch"
    best = best_epoch(report)
    return {
        "pruned_model.pt": "THE FINAL MODEL (above); tpp.load_pruned() loads it with its pruned widths",
        "pruned.pt": "the pruned model right after removal, before fine-tuning (tpp.save_pruned format)",
        "finetune/last.pt": f"training checkpoint (model, optimizer, RNG) after {last}: what --resume continues",
        "finetune/best.pt": "training checkpoint of the best fine-tuning epoch"
        + (f" ({best['epoch'] + 1})" if best else ""),
        "prune/last.pt": "regularisation checkpoint (model, optimizer, pruner state) after its last epoch",
        "prune/best.pt": "the regularisation epoch with the best test top-1 (not the model that was pruned)",
        "report.json": "every number of the job: sizes, speedup, accuracies, per-epoch history, pruned channels",
        "curves.png": "test quality and train loss per epoch: regularisation, removal, fine-tuning",
        "layers.png": "kept and pruned channels of each prunable layer",
        "jsv.png": "mean Jacobian singular value right after removal and after each fine-tuning epoch",
        "metrics.jsonl": 'one record per epoch of both stages ("stage": regularize or finetune), wall times too',
        "config.json": "every option of the run",
        "meta.json": "versions, host and command line of the run and of each resume",
        README: "this guide",
    }


def _commands(out: Path, report: Mapping[str, Any]) -> list[str]:
    from tpp.models.specs import is_factory_spec

    folder = shlex.quote(str(out))
    model = shlex.quote(str(out / "pruned_model.pt"))
    language = "perplexity" in (report.get("accuracy_after_removal") or {})
    export = (
        f"tpp export --format hf --checkpoint {model} --out {shlex.quote(str(out / 'hf'))}"
        if language
        else f"tpp export --format onnx --checkpoint {model} --out {shlex.quote(str(out / 'pruned_model.onnx'))}"
    )
    # a file may name a module:function factory but not make tpp import it: the commands name it
    factory = f" --model {shlex.quote(report['model'])}" if is_factory_spec(report.get("model")) else ""
    return [
        f"evaluate:  tpp eval --checkpoint {model}{factory}",
        f"export:    {export}{factory}",
        f"resume:    tpp prune --out {folder} --resume{factory}   (the other options come from config.json)",
        "           (continues a killed job; with a larger --ft-epochs it fine-tunes further)",
    ]
