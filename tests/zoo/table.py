"""Print the zoo's status as a markdown table.

    python -m tests.zoo.table            # transformers models, both scopes
    python -m tests.zoo.table --timm     # timm models (needs timm: see `make test-timm`)
    python -m tests.zoo.table --lm       # language models (tests.zoo.lm_models), with their export

Options: ``--models a,b`` runs only those, ``--json FILE`` also writes every field of every case,
``--tensor-inputs`` feeds a plain tensor to the models that normally get a dict (to see what a
dict-input failure hides).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from tests.zoo.runner import RESULTS, SCOPES, CaseResult, run_suite
from tests.zoo.suites import available, specs


def _pair(values: tuple[int, int] | None) -> str:
    from tpp.metrics.counting import human

    return f"{human(values[0])} -> {human(values[1])}" if values else ""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def reason_of(case: CaseResult) -> str:
    """The table's last column: why the case ended as it did, and anything else that went wrong."""
    parts = [case.reason] if case.reason else []
    if case.where:
        parts.append(f"at {case.where}")
    if case.changed:
        parts.append("model left changed: " + "; ".join(case.changed[:3]))
    for note in (case.optimizer_note, case.count_note):
        if note:
            parts.append(note)
    return _cell(" - ".join(parts))


def _rows(header: list[str], rows) -> list[str]:
    """A markdown table's lines: the header, its rule, one line per row of cells."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(str(cell) for cell in row) + " |" for row in rows
    ]


def markdown(cases: list[CaseResult]) -> str:
    """The table, then one summary line."""
    lines = _rows(
        ["model", "inputs", "scope", "result", "reload", "params", "FLOPs", "reason"],
        (
            [c.model, c.inputs, c.scope, c.result, _cell(c.reload), _pair(c.params), _pair(c.flops), reason_of(c)]
            for c in cases
        ),
    )
    counts = Counter(c.result for c in cases)
    exact = sum(c.meets_contract_exactly for c in cases)
    lines.append("")
    lines.append(
        f"{len(cases)} cases: {exact} pruned exactly and reloaded identically "
        f"({100 * exact / max(len(cases), 1):.0f}%); " + ", ".join(f"{counts[r]} {r}" for r in RESULTS if counts[r])
    )
    return "\n".join(lines)


def lm_markdown(cases: list[CaseResult]) -> str:
    """The language-model table: family, scope, widths pruned, params, result, export, reason."""
    lines = _rows(
        ["family", "scope", "units pruned", "params", "result", "from_pretrained", "reason"],
        (
            [c.model, c.scope, c.units or "-", _pair(c.params), c.result, _cell(c.export) or "-", reason_of(c)]
            for c in cases
        ),
    )
    exact = sum(c.meets_contract_exactly and c.export == "equal" for c in cases)
    counts = Counter(c.result for c in cases)
    refused = sum(c.export.startswith("refused") for c in cases)
    lines += [
        "",
        f"{len(cases)} cases: {exact} pruned exactly, reloaded identically and exported equal"
        + (f", {refused} with the export refused" if refused else "")
        + "; "
        + ", ".join(f"{counts[r]} {r}" for r in RESULTS if counts[r]),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.zoo.table", description=__doc__.splitlines()[0])
    parser.add_argument("--timm", action="store_true", help="the timm suite instead of transformers")
    parser.add_argument("--lm", action="store_true", help="the language-model suite instead of transformers")
    parser.add_argument("--models", help="comma-separated model names (default: all)")
    parser.add_argument("--scopes", default=",".join(SCOPES), help="comma-separated scopes")
    parser.add_argument("--json", type=Path, help="also write every case's fields to this file")
    parser.add_argument("--tensor-inputs", action="store_true", help="never feed a dict")
    args = parser.parse_args(argv)
    suite = "timm" if args.timm else "lm" if args.lm else "transformers"
    if not available(suite):
        print(
            f"{suite} is not installed; for timm run `make test-timm` once, then use .venv-timm/bin/python",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(1)
    names = args.models.split(",") if args.models else None
    if args.tensor_inputs:  # the specs table is a module-level dict: patch it for this process only
        table = specs(suite)
        for name, spec in table.items():
            table[name] = dataclasses.replace(spec, dict_inputs=False)
    start = time.perf_counter()
    # Torch-Pruning prints notes on stdout; keep stdout for the table
    with tempfile.TemporaryDirectory(prefix="tpp-zoo-") as out, contextlib.redirect_stdout(sys.stderr):
        cases = run_suite(suite, Path(out), names, tuple(args.scopes.split(",")))
    print(lm_markdown(cases) if suite == "lm" else markdown(cases))
    print(f"\n{suite} zoo: {time.perf_counter() - start:.0f} s on {torch.get_num_threads()} thread(s)")
    if args.json:
        args.json.write_text(json.dumps([c.as_dict() for c in cases], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
