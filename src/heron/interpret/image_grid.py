"""A grid of sample images for prediction figures: evenly spread over a set, one axis per image."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["spread", "image_grid", "save_figure"]


def spread(total: int, count: int) -> list[int]:
    """Up to `count` indices spread evenly over `range(total)` (a set listed class by class shows every class)."""
    if total <= 0:
        return []
    return sorted(set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist()))


def image_grid(total: int, count: int, columns: int, cell: tuple[float, float]) -> tuple[object, Iterator]:
    """(figure, iterator of (axis, index)) for up to `count` of `total` images; `cell` is (width, height) in inches.

    Every axis starts with its frame off; axes beyond the images stay blank.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = spread(total, count)
    rows = max(1, -(-len(shown) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(cell[0] * columns, cell[1] * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, zip(axes.flat, shown)


def save_figure(fig, out: Path, dpi: int = 90) -> Path:
    """Write `fig` as PNG to `out` atomically (temp file + rename) and close it."""
    import matplotlib.pyplot as plt

    from heron.interpret.plots import save_png

    try:
        return save_png(fig, Path(out), dpi=dpi)
    finally:
        plt.close(fig)
