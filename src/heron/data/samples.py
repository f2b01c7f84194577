"""Real example data that ships with heron's dependencies, written out as image files.

`heron demo` needs data that works offline on a fresh machine: scikit-learn
bundles 1,797 real handwritten digits (8x8, 10 classes) and two real photos.
Written as ordinary image folders they go through exactly the path a user's
own photos take.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["write_digits", "write_sample_photos"]


def write_digits(folder: str | Path) -> Path:
    """Write scikit-learn's digits as `folder/<digit>/<n>.png` (8x8 grey); skip if present."""
    from sklearn.datasets import load_digits

    folder = Path(folder)
    marker = folder / ".complete"
    if marker.exists():
        return folder
    digits = load_digits()
    for n, (image, label) in enumerate(zip(digits.images, digits.target)):
        target = folder / str(label) / f"{n:04d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.round(image * (255.0 / 16.0)).astype(np.uint8)  # ink 0..16 -> 0..255
        Image.fromarray(pixels, mode="L").save(target)
    marker.touch()
    return folder


def write_sample_photos(folder: str | Path) -> list[Path]:
    """Write scikit-learn's two sample photos (a temple in China, a flower) as JPEGs."""
    from sklearn.datasets import load_sample_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("china.jpg", "flower.jpg"):
        path = folder / name
        if not path.exists():
            Image.fromarray(load_sample_image(name)).save(path, quality=92)
        paths.append(path)
    return paths
