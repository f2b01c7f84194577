"""The ROC curve of a face verifier as a PNG: true accept rate against false accept rate (log scale).

Face verification is judged at small false accept rates (1 in 100, 1 in
1000), so FAR is drawn on a log axis from 1e-4 to 1, where a linear ROC
would squeeze everything that matters into its left edge. The figure marks
the run's operating point (its threshold tau) and the TAR at chosen FARs.
It is written atomically with `heron.interpret.plots.save_png`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, PercentFormatter

from heron.interpret.plots import DPI, _label, save_png

__all__ = ["save_roc_figure", "tar_at"]

FAR_RANGE = (1e-4, 1.0)
DEFAULT_POINTS = {"FAR 1e-2": 1e-2, "FAR 1e-3": 1e-3}
_CURVE = "#1f77b4"
_OPERATING = "#c62828"
_POINT_COLOURS = ("#2e7d32", "#ef6c00", "#6a1b9a", "#00838f")


def _curve(far, tar) -> tuple[np.ndarray, np.ndarray]:
    """far and tar as float arrays of one length, sorted by far (then tar), finite values only."""
    far = np.asarray(far, dtype=np.float64).reshape(-1)
    tar = np.asarray(tar, dtype=np.float64).reshape(-1)
    if far.shape != tar.shape:
        raise ValueError(f"{far.size} false accept rates for {tar.size} true accept rates")
    keep = np.isfinite(far) & np.isfinite(tar)
    far, tar = far[keep], tar[keep]
    order = np.lexsort((tar, far))
    return far[order], tar[order]


def tar_at(far, tar, at: float) -> float:
    """The best true accept rate on the curve with a false accept rate <= `at` (NaN when none)."""
    far, tar = _curve(far, tar)
    reachable = tar[far <= at]
    return float(reachable.max()) if reachable.size else math.nan


def _format_far(value: float) -> str:
    """1e-3 -> '1e-3', 0.000989 -> '9.9e-4', 0.0123 -> '0.012'."""
    if value > 0 and math.isclose(10 ** round(math.log10(value)), value, rel_tol=1e-9):
        return f"1e{round(math.log10(value))}"
    if 0 < value < 0.01:
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:.2g}"


def _mark(ax, far_value: float, tar_value: float, colour: str, marker: str, label: str, size: float,
          zorder: int) -> None:
    """A marker at (far, tar) with dotted guides down to the axes."""
    low = FAR_RANGE[0]
    x = min(max(far_value, low), FAR_RANGE[1])
    ax.plot([x, x], [0.0, tar_value], color=colour, linestyle=":", linewidth=1.2, zorder=2)
    ax.plot([low, x], [tar_value, tar_value], color=colour, linestyle=":", linewidth=1.2, zorder=2)
    ax.plot([x], [tar_value], marker=marker, markersize=size, color=colour, markeredgecolor="white",
            linestyle="none", zorder=zorder, label=label, clip_on=False)


def save_roc_figure(path: str | os.PathLike, far, tar, tau_far: float | None = None, title: str = "",
                    points: Mapping[str, float] | None = None, tau: float | None = None,
                    tau_tar: float | None = None) -> Path:
    """Draw TAR against FAR (log x, 1e-4 to 1) and write it as a PNG at `path` atomically.

    `far`, `tar`: the ROC (e.g. `heron.tasks.faces.verification.roc`).
    `tau_far`: the FAR of the operating threshold, marked with a star (with
    `tau` itself in its label when given) at `tau_tar`, the TAR counted at
    tau (default: the curve's best TAR within `tau_far`, which is higher
    when tau lies below the curve's corner). `points` maps a label to a FAR at
    which the TAR is marked; by default FAR 1e-2 and 1e-3. FARs below the
    smallest one measured (one false accept) are shaded: the data cannot
    resolve them.
    """
    far, tar = _curve(far, tar)
    points = DEFAULT_POINTS if points is None else points
    fig = Figure(figsize=(6.4, 5.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_xlim(*FAR_RANGE)
    ax.set_ylim(0.0, 1.02)
    ax.xaxis.set_major_locator(LogLocator(base=10, numticks=6))
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
    ax.set_xlabel("false accept rate (different people accepted)")
    ax.set_ylabel("true accept rate (same person accepted)")
    ax.set_title(_label(title, 70) if title else "Verification ROC")
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)

    if far.size == 0:
        ax.text(0.5, 0.5, "no ROC to show", ha="center", va="center", color="0.45", transform=ax.transAxes)
        return save_png(fig, path)

    smallest = far[far > 0].min() if np.any(far > 0) else None
    if smallest is not None and smallest > FAR_RANGE[0]:
        ax.axvspan(FAR_RANGE[0], smallest, color="0.93", zorder=0,
                   label=f"under 1 false accept in {round(1 / smallest):,}: not measured")
    auc = float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2.0)) if far.size > 1 else math.nan
    shown = np.clip(far, FAR_RANGE[0], None)  # FAR 0 sits on the left edge
    ax.plot(shown, tar, color=_CURVE, linewidth=2.2, zorder=3, label=f"ROC (AUC {auc:.3f})")

    for k, (name, at) in enumerate(points.items()):
        value = tar_at(far, tar, at)
        if math.isfinite(value):
            _mark(ax, float(at), value, _POINT_COLOURS[k % len(_POINT_COLOURS)], "o",
                  f"TAR {value:.1%} at {_label(name, 24)}", size=7, zorder=5)
    if tau_far is not None and math.isfinite(float(tau_far)):
        value = tar_at(far, tar, float(tau_far)) if tau_tar is None else float(tau_tar)
        if math.isfinite(value):
            where = f"tau {tau:.3f}: " if tau is not None else "operating point: "
            _mark(ax, float(tau_far), value, _OPERATING, "*",
                  f"{where}TAR {value:.1%}, FAR {_format_far(float(tau_far))}", size=22, zorder=4)
    ax.legend(loc="lower right", fontsize=8.5, framealpha=0.95)
    return save_png(fig, path)
