"""A grid of validation images with the predicted landmarks (yellow) over the true ones (red)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["draw_landmark_predictions"]


def _points(ax, points: np.ndarray, width: int, height: int, colour: str, marker: str, numbered: bool) -> None:
    """Draw points `(K, 2)` given as fractions of the image; number them 1..K when `numbered`."""
    xs, ys = points[:, 0] * width, points[:, 1] * height
    ax.scatter(xs, ys, s=40, c=colour, marker=marker, linewidths=2, edgecolors="black" if marker == "o" else None)
    if numbered:
        for i, (x, y) in enumerate(zip(xs, ys), start=1):
            ax.annotate(str(i), (x, y), xytext=(4, 4), textcoords="offset points", color=colour, fontsize=8)


def draw_landmark_predictions(paths: Sequence[Path], predicted: np.ndarray, true: np.ndarray, present: np.ndarray,
                              probability: np.ndarray, out: Path, count: int = 12, columns: int = 4) -> Path:
    """Draw up to `count` images with points `(N, K, 2)` given as fractions of the image; write `out` (PNG).

    `present` `(N,)` is the true p_c and `probability` `(N,)` the predicted
    one, in each title. True points (red dots) are drawn where there is an
    object, predicted ones (yellow crosses, numbered) where the model says
    there is one (probability >= 0.5). The images are spread evenly over `paths`.
    """
    from heron.data.images import load_image
    from heron.interpret.image_grid import image_grid, save_figure

    fig, cells = image_grid(len(paths), count, columns, (3.2, 3.4))
    for ax, i in cells:
        img = load_image(paths[i]).permute(1, 2, 0).numpy()
        height, width = img.shape[:2]
        ax.imshow(img)
        if present[i]:
            _points(ax, true[i], width, height, "red", "o", numbered=False)
        if probability[i] >= 0.5:
            _points(ax, predicted[i], width, height, "yellow", "x", numbered=True)
        wrong = (probability[i] >= 0.5) != bool(present[i])
        truth = "object" if present[i] else "no object"
        ax.set_title(f"p(object) {probability[i]:.2f}\n(is: {truth})", fontsize=9,
                     color="crimson" if wrong else "black")
    fig.suptitle("validation: predicted landmarks (yellow x, numbered) and true ones (red)", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, out)
