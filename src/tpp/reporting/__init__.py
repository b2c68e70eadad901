"""Reports of pruning runs: read job folders, aggregate over seeds, write markdown tables and plots.

>>> from tpp.reporting import collect, summary_table, write_report
>>> runs = collect(["runs/mnist_mlp7_linear"])                         # doctest: +SKIP
>>> print(summary_table(runs))                                          # doctest: +SKIP
>>> write_report(runs, "docs/results/mlp.md", "MLP-7-Linear on MNIST")  # doctest: +SKIP
"""

from tpp.reporting.collect import collect
from tpp.reporting.paired import paired_table
from tpp.reporting.plots import plot_accuracy_vs_epoch, plot_accuracy_vs_speedup
from tpp.reporting.report import write_report
from tpp.reporting.tables import aggregate, mean_std, paper_table, pivot_table, speedup_table, summary_table

__all__ = [
    "aggregate",
    "collect",
    "mean_std",
    "paired_table",
    "paper_table",
    "pivot_table",
    "plot_accuracy_vs_epoch",
    "plot_accuracy_vs_speedup",
    "speedup_table",
    "summary_table",
    "write_report",
]
