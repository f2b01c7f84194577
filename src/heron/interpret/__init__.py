"""Interpretation of a trained model: figures of a run and its HTML report.

`heron.interpret.plots` draws the PNG figures of a run folder (training
history, confusion matrix, top losses, learning-rate finder, class balance);
`heron.interpret.report` writes the run's one-page `report.html`;
`heron.interpret.figures_job` draws a run's figures in a background process.
Names load on first use, so writing a report never imports matplotlib.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "plot_class_balance": "heron.interpret.plots",
    "plot_confusion": "heron.interpret.plots",
    "plot_history": "heron.interpret.plots",
    "plot_lr_find": "heron.interpret.plots",
    "plot_top_losses": "heron.interpret.plots",
    "write_report": "heron.interpret.report",
}

__all__ = [
    "plot_class_balance",
    "plot_confusion",
    "plot_history",
    "plot_lr_find",
    "plot_top_losses",
    "write_report",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'heron.interpret' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
