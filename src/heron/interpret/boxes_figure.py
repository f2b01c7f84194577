"""A grid of validation images with the predicted box (yellow) over the true one (red)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["draw_box_predictions"]


def _rect(ax, box, width: int, height: int, colour: str, style: str = "-"):
    from matplotlib.patches import Rectangle

    x1, y1, x2, y2 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=2, linestyle=style))


def draw_box_predictions(paths: Sequence[Path], predicted: np.ndarray, true: np.ndarray, labels: Sequence[str],
                         truth: Sequence[str], confidence: Sequence[float], iou: Sequence[float], out: Path,
                         count: int = 12, columns: int = 4, presence: Sequence[float] | None = None) -> Path:
    """Draw up to `count` images with boxes `(N, 4)` given as fractions of the image; write `out` (PNG).

    The images are spread evenly over `paths` (a validation set listed class by
    class shows every class). Titles: predicted class and probability, true class when it differs, and
    the IoU of the two boxes. An image without a true box shows the prediction alone. With `presence`
    (the predicted p_c per image), a box is drawn only where p_c >= 0.5, and p_c is in the title.
    """
    from heron.data.images import load_image
    from heron.interpret.image_grid import image_grid, save_figure

    fig, cells = image_grid(len(paths), count, columns, (3.2, 3.4))
    for ax, i in cells:
        img = load_image(paths[i]).permute(1, 2, 0).numpy()
        height, width = img.shape[:2]
        ax.imshow(img)
        if true[i].sum() > 0:
            _rect(ax, true[i], width, height, "red")
        boxed = presence is None or presence[i] >= 0.5
        if boxed:
            _rect(ax, predicted[i], width, height, "yellow", "--")
        wrong = "" if labels[i] == truth[i] else f" (is {truth[i]})"
        where = (f"IoU {iou[i]:.2f}" if boxed else "no box") + ("" if presence is None else f", p_c {presence[i]:.2f}")
        ax.set_title(f"{labels[i]} {confidence[i]:.2f}{wrong}\n{where}", fontsize=9,
                     color="black" if not wrong else "crimson")
    fig.suptitle("validation: predicted box (yellow, dashed) and true box (red)", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, out)
