"""A painting to take a style from, made from any photo: brush strokes along its edges.

No painting ships with heron's dependencies, so the gallery's style image is
painted here: the photo's gradient comes from the course's Sobel filters
(`heron.scratch.filters`), each stroke runs along the edges (perpendicular to
the gradient) in the photo's colour pushed to a bolder palette, and big
brushes go down first, small ones on top where there is detail, like a
painter blocking in and then refining. Deterministic for a seed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["paint_strokes"]


def _gradients(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel x and y of a blurred grey image `(H, W)` (heron's numpy filters)."""
    from heron.scratch.filters import apply_filter, classic_filters

    box = np.full((5, 5), 1.0 / 25)
    smooth = apply_filter(gray, box)
    filters = classic_filters()
    return apply_filter(smooth, filters["sobel x"]), apply_filter(smooth, filters["sobel y"])


def _bolder(rgb: np.ndarray, saturation: float, levels: int) -> np.ndarray:
    """Colours `(..., 3)` in [0, 1] pushed away from grey and posterised to `levels` steps per channel."""
    grey = rgb.mean(axis=-1, keepdims=True)
    vivid = np.clip(grey + saturation * (rgb - grey), 0.0, 1.0)
    return np.round(vivid * (levels - 1)) / (levels - 1)


def paint_strokes(photo: np.ndarray, brushes: tuple[int, ...] = (14, 8, 4), strokes_per_brush: int = 2500,
                  seed: int = 0) -> np.ndarray:
    """`(H, W, 3)` uint8 photo -> `(H, W, 3)` uint8 painting of oriented brush strokes."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    rgb = photo.astype(np.float64) / 255.0
    h, w, _ = rgb.shape
    gx, gy = _gradients(rgb.mean(axis=-1))
    strength = np.hypot(gx, gy)
    colours = _bolder(rgb, saturation=1.6, levels=6)
    canvas = Image.fromarray((_bolder(rgb, 1.2, 4) * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(12))
    draw = ImageDraw.Draw(canvas)
    for i, width in enumerate(brushes):
        # later (finer) brushes go where the photo has detail
        weight = (strength + 1e-3) ** (i / max(1, len(brushes) - 1) * 1.5)
        picks = rng.choice(h * w, size=strokes_per_brush, p=(weight / weight.sum()).ravel())
        for y, x in zip(*np.unravel_index(picks, (h, w))):
            angle = np.arctan2(gy[y, x], gx[y, x]) + np.pi / 2 + rng.normal(0, 0.15)  # along the edge
            length = width * rng.uniform(2.0, 4.0)
            dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
            jitter = rng.normal(0, 0.06, 3)
            colour = tuple(int(v) for v in np.clip(colours[y, x] + jitter, 0, 1) * 255)
            draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=colour, width=width)
    return np.asarray(canvas)
