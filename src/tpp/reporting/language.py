"""The language-model table of a report: perplexity before, right after removal and after recovery.

A language model's jobs are compared on test perplexity (lower is better) with the training budget
of each job (optimizer steps after the pretrained model, regularisation and recovery counted together)
and, where the runs include one, against the *dense control*: the unpruned model trained with the
same budget on the same text (a job with nothing removed), since training on the domain lowers the
dense model's perplexity too.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from tpp.reporting.collect import DENSE_CONTROL, value
from tpp.reporting.groups import drop_duplicate_seeds, group_key
from tpp.reporting.tables import _unit, fmt, markdown_table, mean_std


def is_language_model_run(run: Mapping[str, Any]) -> bool:
    """Whether a collected run was evaluated on text (its report has perplexities)."""
    return value(run, "accuracy_before", "perplexity") is not None


def language_model_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table, one row per (model, dataset, method, ratio, recovery LR), perplexities as mean ± population
    std over seeds (a repeated seed counts once); model and dataset columns when there are several."""
    groups: dict[tuple[str, str, str, str, str], list[Mapping[str, Any]]] = {}
    for run in drop_duplicate_seeds(runs)[0]:
        groups.setdefault(group_key(run), []).append(run)
    # the dense control of the same model, data and LR: another model's says nothing about this one
    dense = {
        (model, dataset, lr): mean_std(value(r, "finetune", "last_perplexity") for r in members)[0]
        for (model, dataset, method, _, lr), members in groups.items()
        if method == DENSE_CONTROL
    }
    several = len({key[:2] for key in groups}) > 1
    pair_order = list(dict.fromkeys(key[:2] for key in groups))
    header = (["model", "dataset"] if several else []) + [
        "method",
        "ratio",
        "recovery LR",
        "seeds",
        "training steps (reg. + recovery)",
        "perplexity before",
        "right after removal",
        "after recovery",
        "× dense control",
        "mean JSV after removal",
        "params pruned",
        "wall time per job",
    ]
    rows = []
    for key, members in sorted(
        groups.items(),
        key=lambda item: (pair_order.index(item[0][:2]), item[0][4], item[0][3] != "0", item[0][3], item[0][2]),
    ):
        model, dataset, method, ratio, lr = key
        n = len(members)
        steps = sorted(
            {
                (int(value(r, "train_steps", "regularize") or 0), int(value(r, "train_steps", "finetune") or 0))
                for r in members
            }
        )
        after = mean_std(value(r, "finetune", "last_perplexity") for r in members)
        control = dense.get((model, dataset, lr))
        relative = "n/a" if after[0] is None or control is None else f"{after[0] / control:.3f}×"
        rows.append(
            ([f"`{model}`", f"`{dataset}`"] if several else [])
            + [
                method,
                f"`{ratio}`",
                lr,
                str(n),
                ", ".join(f"{a} + {b}" for a, b in steps),
                fmt(mean_std(value(r, "accuracy_before", "perplexity") for r in members)[:2], 3, n=n),
                fmt(mean_std(value(r, "accuracy_after_removal", "perplexity") for r in members)[:2], 3, n=n),
                fmt(after[:2], 3, n=n),
                relative,
                fmt(mean_std(value(r, "jsv_after_prune", "mean") for r in members)[:2], 5, n=n),
                _unit(fmt(mean_std(value(r, "params_reduction") for r in members)[:2], 2, 100.0, n=1), "%"),
                _unit(fmt(mean_std(value(r, "wall_seconds") for r in members)[:2], 1, 1 / 60, n=1), " min"),
            ]
        )
    return markdown_table(header, rows)


def text_protocol(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """How the text was read, from the jobs' recorded settings (sequence length, tokenizer, tokens)."""
    lines = []
    for run in runs:
        before = run["report"].get("accuracy_before") or {}
        config = run.get("settings") or {}
        text = (
            f"- text: {config.get('dataset', '?')}, windows of {config.get('seq_len', '?')} tokens "
            f"({config.get('tokenizer', '?')} tokenizer), perplexity over {before.get('samples', '?')} tokens of "
            f"{config.get('eval_split', '?')}.txt; mean JSV of the next-token logits by the input embeddings "
            "(tpp.metrics.language)"
        )
        if text not in lines:
            lines.append(text)
    return lines
