"""Pictures of a detector at work: boxes drawn on images, and precision-recall curves per class."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["draw_detection_grid", "draw_detections", "draw_pr_curves"]

_PREDICTED, _TRUE = "yellow", "red"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path, dpi: int = 90) -> Path:
    from heron.interpret.image_grid import save_figure

    return save_figure(fig, out, dpi)


def _boxes_on(ax, boxes, labels, classes: Sequence[str], colour: str, scores=None, style: str = "-") -> None:
    """Rectangles for `boxes (n, 4)` xyxy pixels, with the class (and score) written above each."""
    from matplotlib.patches import Rectangle

    for k, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=float).reshape(-1, 4)):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.6,
                               linestyle=style))
        if scores is not None:
            text = f"{classes[int(labels[k])]} {float(scores[k]):.2f}"
            ax.text(x1, y1 - 2, text, color="black", fontsize=7, va="bottom",
                    bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "edgecolor": "none"})


def _above(detection, threshold: float):
    keep = np.asarray(detection.scores) >= threshold
    return np.asarray(detection.boxes)[keep], np.asarray(detection.labels)[keep], np.asarray(detection.scores)[keep]


def draw_detection_grid(paths: Sequence[Path], truths: Sequence[dict], detections: Sequence, classes: Sequence[str],
                        out: Path, score_threshold: float = 0.3, count: int = 8, columns: int = 4) -> Path:
    """Up to `count` images (spread over `paths`) with true boxes (red) and detections above the threshold (yellow)."""
    from heron.data.images import load_image
    from heron.interpret.image_grid import image_grid

    fig, cells = image_grid(len(paths), count, columns, (4.0, 3.6))
    for ax, i in cells:
        ax.imshow(load_image(paths[i]).permute(1, 2, 0).numpy())
        truth = truths[i]
        _boxes_on(ax, truth["boxes"], truth["labels"], classes, _TRUE)
        boxes, labels, scores = _above(detections[i], score_threshold)
        _boxes_on(ax, boxes, labels, classes, _PREDICTED, scores, "--")
        ax.set_title(f"{Path(paths[i]).name}: {len(boxes)} found, {len(truth['boxes'])} true", fontsize=8)
    fig.suptitle(f"validation: detections with score >= {score_threshold:g} (yellow, dashed), true boxes (red)",
                 fontsize=11)
    fig.tight_layout()
    return _save(fig, out)


def draw_detections(path: Path, detection, classes: Sequence[str], out: Path, score_threshold: float = 0.0) -> Path:
    """One image with its detections (class and score on each box), at its own resolution (at most 1600 px)."""
    from heron.data.images import load_image

    plt = _pyplot()
    img = load_image(path).permute(1, 2, 0).numpy()
    height, width = img.shape[:2]
    shrink = min(1.0, 1600 / max(width, height))  # the image's own pixels, at most 1600 a side
    fig = plt.figure(figsize=(width * shrink / 100, height * shrink / 100))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(img)
    ax.axis("off")
    boxes, labels, scores = _above(detection, score_threshold)
    _boxes_on(ax, boxes, labels, classes, _PREDICTED, scores)
    return _save(fig, out, dpi=100)


def draw_pr_curves(curves: Sequence, classes: Sequence[str], out: Path) -> Path:
    """Precision against recall at IoU 0.5, one line per class (a class without true boxes is left out)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, curve in zip(classes, curves):
        if curve is None:
            continue
        recall, precision = (np.asarray(v, dtype=float) for v in _recall_precision(curve))
        if len(recall):
            ax.plot(recall, precision, label=name, linewidth=1.6)
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("precision-recall at IoU 0.5")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def _recall_precision(curve):
    """A curve as (recall, precision), from a dict with those keys or a pair."""
    if isinstance(curve, dict):
        return curve.get("recall", []), curve.get("precision", [])
    return curve
