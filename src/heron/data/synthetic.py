"""Synthetic image sets with known answers, written as ordinary files: shapes with their boxes.

`write_shapes` draws one shape per image (circle, square or triangle, of a
random size, colour and position) on a noisy, cluttered background and
writes `folder/<shape>/<n>.png` plus `boxes.csv` (file, x1, y1, x2, y2 in
pixels). The label and the box are exact, so localisation can be measured
without any download; the clutter (faint lines, noise) keeps it from being
trivial.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SHAPES", "write_shapes"]

SHAPES = ("circle", "square", "triangle")


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """Smooth colour noise with a few faint lines."""
    coarse = rng.uniform(40, 200, size=(4, 4, 3))
    base = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((size, size), Image.BILINEAR), np.float32)
    pixels = np.clip(base + rng.normal(0, 18, size=(size, size, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels)
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0, x1, y1 = rng.integers(0, size, 4).tolist()
        draw.line((x0, y0, x1, y1), fill=tuple(rng.integers(60, 200, 3).tolist()), width=1)
    return img


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], colour: tuple) -> None:
    x1, y1, x2, y2 = box
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=colour)
    else:
        draw.polygon([((x1 + x2) / 2, y1), (x2, y2), (x1, y2)], fill=colour)


def write_shapes(folder: str | Path, per_class: int = 60, size: int = 96, seed: int = 0,
                 min_frac: float = 0.25, max_frac: float = 0.6) -> Path:
    """Write `per_class` images of each of `SHAPES`; returns the path of `boxes.csv`.

    Each shape's box side is `min_frac..max_frac` of the image side, placed
    anywhere it fits; the box written is the shape's exact extent.
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    rows = []
    for shape in SHAPES:
        (folder / shape).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            img = _background(rng, size)
            side = int(rng.uniform(min_frac, max_frac) * size)
            x1, y1 = (int(v) for v in rng.integers(0, size - side + 1, 2))
            box = (x1, y1, x1 + side, y1 + side)
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            _draw(ImageDraw.Draw(img), shape, box, colour)
            name = f"{shape}/{n:04d}.png"
            img.save(folder / name)
            rows.append([name, *box])
    path = folder / "boxes.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "x1", "y1", "x2", "y2"])
        writer.writerows(rows)
    return path
