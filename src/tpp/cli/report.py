"""``tpp report RUN_DIRS...``: tables (mean ± std over seeds) and plots of finished pruning jobs."""

from __future__ import annotations

import argparse
from typing import Any

from tpp.cli.common import add_command

DESCRIPTION = """\
Summarise finished pruning jobs (folders with report.json, written by `tpp prune` or `tpp run`;
a folder is searched recursively). Jobs are grouped by method, ratio and fine-tuning LR; cells
are mean ± population std over seeds of the best and last fine-tuning top-1, the top-1 right
after removal, the mean JSV right after pruning (when logged), the FLOPs speedup and the
fraction of parameters removed. Without --out the table is printed; with --out a markdown
report with plots (PNG next to it) is written.

examples:
  tpp report runs/mnist_mlp7_linear
  tpp report runs/job_a runs/job_b --out docs/results/ab.md --title "TPP vs L1"
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tpp report``."""
    parser = add_command(subparsers, "report", help="tables and plots of finished pruning jobs",
                         description=DESCRIPTION)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="job folders, or folders containing them")
    parser.add_argument("--out", metavar="FILE.md", help="write a markdown report with plots here")
    parser.add_argument("--title", default="Pruning results", help="report title")
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the summary table or write the report. Returns 0."""
    from tpp.reporting import collect, summary_table, write_report

    runs = collect(args.run_dirs)
    if args.out:
        path = write_report(runs, args.out, args.title)
        print(f"report of {len(runs)} job(s) written to {path}")
    else:
        print(summary_table(runs))
    return 0
