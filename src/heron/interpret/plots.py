"""Figures of a training run, written as PNG files into the run folder.

Each public function draws one figure (training history, confusion matrix,
top losses, learning-rate finder, class balance) and writes it atomically:
the PNG is saved to a temporary file beside the target and renamed over it,
so a run folder never holds a half-written image. Figures are built on
`matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so no
global state leaks between calls and no display is needed.

Class and file names come from users' folders: they are shortened and their
`$` signs escaped before drawing, so a name never turns into mathtext.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from heron._atomic import atomic_save

__all__ = [
    "plot_history",
    "plot_confusion",
    "plot_top_losses",
    "plot_lr_find",
    "plot_class_balance",
]

DPI = 110
_TRAIN_COLOR = "#1f77b4"
_VALID_COLOR = "#ff7f0e"
_WRONG_COLOR = "#c62828"
_RIGHT_COLOR = "#1b5e20"
_PHASE_COLORS = ("#e3f2fd", "#fff3e0", "#e8f5e9", "#f3e5f5")


# ---------------------------------------------------------------- helpers


def _new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    """A figure attached to its own Agg canvas (no pyplot, no global state)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | os.PathLike, dpi: float | str = DPI) -> Path:
    """Write `fig` as a PNG at `path` atomically (temp file + rename); `dpi="figure"` keeps the figure's own."""

    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            # Users' class names may hold glyphs the default font lacks.
            warnings.filterwarnings("ignore", message=r"Glyph .* missing from")
            warnings.filterwarnings("ignore", message=r".*constrained_layout not applied")
            fig.savefig(tmp, format="png", dpi=dpi, facecolor="white", pil_kwargs={"compress_level": 1})

    return atomic_save(path, write)


_save = save_png


def _label(text: Any, max_len: int = 24) -> str:
    """A user string made safe to draw: shortened, `$` escaped (no mathtext)."""
    text = str(text).replace("\n", " ")
    if len(text) > max_len:
        text = text[: max_len - 1] + "\u2026"
    return text.replace("$", r"\$")


def _as_float(value: Any) -> float:
    """`value` as a float, NaN for None or anything not finite-convertible."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _note(ax, text: str) -> None:
    """Write a centred grey note on an axis that has nothing to show."""
    ax.text(0.5, 0.5, text, ha="center", va="center", color="0.45", transform=ax.transAxes)


# ---------------------------------------------------------------- history


def _phase_spans(phases: Sequence[str]) -> list[tuple[str, int, int]]:
    """Runs of equal phase as (name, first_epoch, last_epoch), epochs from 1."""
    spans: list[tuple[str, int, int]] = []
    for i, phase in enumerate(phases, start=1):
        if spans and spans[-1][0] == phase:
            spans[-1] = (phase, spans[-1][1], i)
        else:
            spans.append((phase, i, i))
    return spans


def _shade_phases(ax, spans: list[tuple[str, int, int]], label: bool) -> None:
    """Shade each phase's epochs and, when `label`, name the phase on top."""
    for k, (name, first, last) in enumerate(spans):
        ax.axvspan(first - 0.5, last + 0.5, color=_PHASE_COLORS[k % len(_PHASE_COLORS)], zorder=0)
        if k > 0:
            ax.axvline(first - 0.5, color="0.55", linestyle="--", linewidth=1, zorder=1)
        if label and name:
            ax.text((first + last) / 2, 1.0, _label(name, 20), transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=9, color="0.3")


def _plot_series(ax, x: np.ndarray, y: np.ndarray, **style) -> bool:
    """Plot `y` against `x`, gaps at NaNs; False when there is nothing to plot."""
    if not np.isfinite(y).any():
        return False
    ax.plot(x, y, marker="o", markersize=4, linewidth=1.8, **style)  # NaNs leave gaps
    return True


def plot_history(records: list[dict], path: str | os.PathLike) -> Path:
    """Loss and validation accuracy per epoch of a run, written as a PNG.

    `records` are the rows of metrics.jsonl (keys phase, epoch, train_loss,
    valid_loss, valid_accuracy, ...). Epochs are numbered 1..N across phases
    in the order given; each phase ("head", "finetune") is shaded and named.
    Missing values (None) leave a gap; a single epoch is drawn as points.
    """
    fig = _new_figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    x = np.arange(1, len(records) + 1, dtype=float)

    def column(key: str) -> np.ndarray:
        return np.array([_as_float(r.get(key)) for r in records], dtype=float)  # (N,), NaN where missing

    spans = _phase_spans([str(r.get("phase") or "") for r in records])
    for ax in (ax_loss, ax_acc):
        _shade_phases(ax, spans, label=len(spans) > 1 or bool(spans and spans[0][0]))
        ax.set_xlabel("epoch")
        if len(records) <= 20:
            ax.set_xticks(x)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if len(records):
            ax.set_xlim(0.5, len(records) + 0.5)

    drawn = _plot_series(ax_loss, x, column("train_loss"), color=_TRAIN_COLOR, label="train")
    drawn |= _plot_series(ax_loss, x, column("valid_loss"), color=_VALID_COLOR, label="valid")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("Loss", pad=16)
    if drawn:
        ax_loss.legend(loc="best", fontsize=9)
    else:
        _note(ax_loss, "no losses recorded")

    acc = column("valid_accuracy")
    ax_acc.set_ylabel("valid accuracy")
    ax_acc.set_title("Validation accuracy", pad=16)
    ax_acc.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
    if _plot_series(ax_acc, x, acc, color=_VALID_COLOR):
        best = int(np.nanargmax(acc))
        ax_acc.plot(x[best], acc[best], marker="*", markersize=14, color=_WRONG_COLOR, zorder=3,
                    linestyle="none", label=f"best {acc[best]:.1%} (epoch {best + 1})")
        low = float(np.nanmin(acc))
        ax_acc.set_ylim(max(0.0, low - 0.1 * (1.0 - low) - 0.02), 1.005)
        ax_acc.legend(loc="lower right", fontsize=9)
    else:
        _note(ax_acc, "no validation accuracy recorded")
    return _save(fig, path)


# ---------------------------------------------------------------- confusion


def plot_confusion(matrix, classes: Sequence[str], path: str | os.PathLike,
                   normalize: bool = True) -> Path:
    """Confusion matrix (rows actual, columns predicted) written as a PNG.

    Cells show counts; with `normalize` the colours are row-normalised
    (recall per class) so small classes read as clearly as large ones. Font
    size shrinks with the number of classes and the numbers are dropped when
    there are too many to read.
    """
    m = np.asarray(matrix, dtype=float)
    n = len(classes)
    if m.ndim != 2 or m.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {m.shape} does not match {n} classes")
    totals = m.sum(axis=1, keepdims=True)
    colours = np.divide(m, totals, out=np.zeros_like(m), where=totals > 0) if normalize else m

    side = float(np.clip(2.5 + 0.3 * n, 5.0, 16.0))
    fig = _new_figure(side + 1.2, side)
    ax = fig.subplots()
    image = ax.imshow(colours, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    cbar = fig.colorbar(image, ax=ax, shrink=0.8)
    cbar.set_label("fraction of actual class" if normalize else "count")

    cell_pt = 72.0 * 0.75 * side / max(n, 1)  # a cell's side in points, about
    tick_size = float(np.clip(0.45 * cell_pt, 6, 10))
    names = [_label(c, 18 if n > 15 else 24) for c in classes]
    ax.set_xticks(range(n), names, rotation=90 if n > 12 else 45,
                  ha="center" if n > 12 else "right", rotation_mode="default" if n > 12 else "anchor",
                  fontsize=tick_size)
    ax.set_yticks(range(n), names, fontsize=tick_size)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    total = m.sum()
    accuracy = np.trace(m) / total if total else math.nan
    ax.set_title(f"Confusion matrix: accuracy {accuracy:.1%} of {int(total)}")

    if n <= 30:
        _annotate_cells(ax, m, colours / (colours.max() or 1.0), fontsize=float(np.clip(0.35 * cell_pt, 6, 12)))
    return _save(fig, path)


def _annotate_cells(ax, counts: np.ndarray, shade: np.ndarray, fontsize: float) -> None:
    """Write each non-zero count in its cell, white on dark cells."""
    for i, j in zip(*np.nonzero(counts)):
        value = counts[i, j]
        text = f"{int(value)}" if float(value).is_integer() else f"{value:.2g}"
        ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                color="white" if shade[i, j] > 0.55 else "black", in_layout=False, clip_on=True)


# ---------------------------------------------------------------- top losses


def _to_hwc_uint8(image) -> np.ndarray:
    """An image tensor/array (3,H,W), (H,W,3), (1,H,W) or (H,W) as (H,W,3) uint8."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = a.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"cannot show an image of shape {tuple(np.shape(image))}")
    a = a[:, :, :3]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        if np.nanmax(a, initial=0.0) <= 1.0:
            a = a * 255.0
        a = np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8)
    return a


def plot_top_losses(items: list[dict], path: str | os.PathLike, ncols: int = 4) -> Path:
    """A grid of the images the model got most wrong, written as a PNG.

    Each item holds "image" (uint8 (3,H,W) or (H,W,3), tensor or array),
    "label" (actual), "pred", "prob" (probability of pred), "loss" and
    "name" (file name). Tiles are titled "pred / actual / loss / prob", in
    red when the prediction is wrong, with the file name below.
    """
    count = len(items)
    cols = max(1, min(ncols, count))
    rows = max(1, math.ceil(count / cols))
    # A plain grid: constrained layout costs more than drawing a dozen images.
    height = 2.95 * rows + 0.4
    fig = _new_figure(2.7 * cols, height, layout=None)
    fig.suptitle("Top losses: predicted / actual / loss / probability", fontsize=11)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.2 / height, top=1 - 0.75 / height, wspace=0.08, hspace=0.45)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.set_axis_off()
    if not items:
        _note(axes[0], "no images to show")
    for ax, item in zip(axes, items):
        ax.imshow(_to_hwc_uint8(item["image"]), interpolation="antialiased")
        pred, actual = str(item.get("pred", "?")), str(item.get("label", "?"))
        title = (f"{_label(pred, 14)} / {_label(actual, 14)}\n"
                 f"{_as_float(item.get('loss')):.2f} / {_as_float(item.get('prob')):.2f}")
        ax.set_title(title, fontsize=9, color=_WRONG_COLOR if pred != actual else _RIGHT_COLOR)
        if item.get("name"):
            ax.text(0.5, -0.03, _label(Path(str(item["name"])).name, 30), transform=ax.transAxes,
                    ha="center", va="top", fontsize=7, color="0.35")
    return _save(fig, path)


# ---------------------------------------------------------------- lr finder


def plot_lr_find(lrs, losses, suggestion: float | None, path: str | os.PathLike) -> Path:
    """Loss against learning rate (log x) from an LR range test, as a PNG.

    The suggested learning rate, when given, is marked with a dot on the
    curve and a dashed line. The y range stops a little above the losses seen
    before the minimum, so the final divergence does not flatten the curve.
    """
    lr = np.asarray([_as_float(v) for v in lrs], dtype=float)
    loss = np.asarray([_as_float(v) for v in losses], dtype=float)
    if lr.shape != loss.shape:
        raise ValueError(f"{lr.size} learning rates for {loss.size} losses")
    keep = np.isfinite(lr) & np.isfinite(loss) & (lr > 0)
    lr, loss = lr[keep], loss[keep]

    fig = _new_figure(6.5, 4.2)
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title("Learning-rate finder")
    ax.grid(True, which="both", alpha=0.25)
    if lr.size == 0:
        _note(ax, "no finite losses recorded")
        return _save(fig, path)

    ax.plot(lr, loss, color=_TRAIN_COLOR, linewidth=1.8)
    lowest = int(np.argmin(loss))
    low, high = float(loss[lowest]), float(loss[: lowest + 1].max())
    span = max(high - low, 1e-8 + abs(low) * 0.05)
    ax.set_ylim(low - 0.1 * span, min(float(loss.max()), high + 0.3 * span) + 0.05 * span)
    if suggestion is not None and math.isfinite(_as_float(suggestion)) and suggestion > 0:
        at = float(np.interp(math.log(suggestion), np.log(lr), loss))
        ax.axvline(suggestion, color=_WRONG_COLOR, linestyle="--", linewidth=1)
        ax.plot([suggestion], [at], marker="o", markersize=8, color=_WRONG_COLOR, linestyle="none",
                label=f"suggested lr = {suggestion:.2e}")
        ax.legend(loc="upper left", fontsize=9)
    return _save(fig, path)


# ---------------------------------------------------------------- class balance


def plot_class_balance(counts: Mapping[str, Mapping[str, int]], path: str | os.PathLike) -> Path:
    """Images per class and split as grouped bars, written as a PNG.

    `counts` maps class -> {split: count}, e.g. {"cat": {"train": 120,
    "valid": 30}}. Splits keep the order in which they first appear; bars
    are labelled with their counts when there are few enough to read.
    """
    classes = list(counts)
    splits: list[str] = []
    for per_split in counts.values():
        splits += [s for s in per_split if s not in splits]
    n = len(classes)
    width = float(np.clip(2.0 + 0.3 * n * max(1, len(splits)) ** 0.5, 6.0, 16.0))
    fig = _new_figure(width, 5.0 if n > 10 else 4.5)
    ax = fig.subplots()
    ax.set_title("Images per class")
    ax.set_ylabel("images")
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if not classes or not splits:
        _note(ax, "no images counted")
        return _save(fig, path)

    bar = 0.8 / len(splits)
    x = np.arange(n, dtype=float)
    colours = (_TRAIN_COLOR, _VALID_COLOR, "#2ca02c", "#9467bd", "#8c564b")
    for k, split in enumerate(splits):
        heights = [int(counts[c].get(split, 0)) for c in classes]
        bars = ax.bar(x + (k - (len(splits) - 1) / 2) * bar, heights, bar,
                      label=_label(split), color=colours[k % len(colours)])
        if n * len(splits) <= 24:
            ax.bar_label(bars, fontsize=8, padding=2)
    ax.set_xticks(x, [_label(c, 18) for c in classes], rotation=90 if n > 10 else 30,
                  ha="center" if n > 10 else "right", rotation_mode="default" if n > 10 else "anchor",
                  fontsize=float(np.clip(11 - 0.1 * n, 6, 10)))
    ax.set_xlim(-0.6, n - 0.4)
    ax.margins(y=0.12)
    ax.legend(title="split", fontsize=9)
    return _save(fig, path)
