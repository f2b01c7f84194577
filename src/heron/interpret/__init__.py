"""Interpretation of a trained model: figures of a run and its HTML report.

`heron.interpret.plots` draws the PNG figures of a run folder (training
history, confusion matrix, top losses, learning-rate finder, class balance);
`heron.interpret.report` writes the run's one-page `report.html`.
"""

from heron.interpret.plots import (
    plot_class_balance,
    plot_confusion,
    plot_history,
    plot_lr_find,
    plot_top_losses,
)
from heron.interpret.report import write_report

__all__ = [
    "plot_class_balance",
    "plot_confusion",
    "plot_history",
    "plot_lr_find",
    "plot_top_losses",
    "write_report",
]
