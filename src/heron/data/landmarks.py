"""Landmarks per image from a CSV, the images they belong to, and a synthetic set with exact answers.

The CSV is `file,x1,y1,...,xK,yK` in pixels (a header row naming the file
column first is optional): one row per image, K points in a fixed order. A
row with no coordinates, or an image the CSV does not name, has no object
(p_c = 0). Names are relative to `image_root` (default: the CSV's folder).

`write_landmark_shapes` draws one triangle per image (its 3 vertices are the
landmarks, always in the order top, right, left) of a random size, position
and rotation on a noisy, cluttered background; about a fifth of the images
have none.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from PIL import ImageDraw

from heron.data.folders import split_stratified
from heron.data.images import find_images, image_size
from heron.data.synthetic import background
from heron.errors import DataError

__all__ = ["read_landmarks", "landmark_images", "landmark_targets", "write_landmark_shapes"]

Points = tuple[float, ...]  # (x1, y1, ..., xK, yK) in pixels
_FILE_COLUMNS = ("file", "path", "image", "filename")


def _coordinates(cells: list[str], k: int, where: str) -> Points | None:
    """The row's 2K numbers, or None for a row without any (no object)."""
    values = [c.strip() for c in cells]
    if not any(values):
        return None
    if len(values) != 2 * k:
        raise DataError(f"{where}: expected {2 * k} coordinates (x, y for each of {k} points), got {len(values)}")
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise DataError(f"{where}: coordinates must be numbers (or all empty for no object), got {values!r}") from None


def _points_count(path: Path, first: list[str], points: int | None) -> tuple[int, bool]:
    """(K, whether `first` is a header), checked against the `points` expected."""
    header = first[0].strip().lower() in _FILE_COLUMNS
    columns = len(first) - 1
    if columns < 2 or columns % 2:
        raise DataError(f"{path}:1: expected file,x1,y1,...,xK,yK (an even number of coordinates), "
                        f"got {columns} after the file name")
    k = columns // 2
    if points is not None and k != points:
        raise DataError(f"{path}: has {k} points per image but {points} were expected; use a file with {points}")
    return k, header


def read_landmarks(path: str | Path, image_root: str | Path | None = None,
                   points: int | None = None) -> tuple[dict[Path, Points | None], int]:
    """`({resolved image path: (x1, y1, ..., xK, yK) or None}, K)` from a landmark CSV.

    K comes from the header (or the first row); `points`, when given, must match it.
    Errors (DataError, one line naming the file and line): a missing file, an
    odd number of coordinate columns, a row with the wrong number of values.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: points file not found; give a CSV of file,x1,y1,...,xK,yK in pixels")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise DataError(f"{path}: empty points file; write file,x1,y1,...,xK,yK and one row per image")
    k, header = _points_count(path, rows[0], points)
    root = Path(image_root) if image_root else path.parent
    found: dict[Path, Points | None] = {}
    for line, row in enumerate(rows[1:] if header else rows, start=2 if header else 1):
        if not row or not row[0].strip():
            continue
        found[(root / row[0].strip()).resolve()] = _coordinates(row[1:], k, f"{path}:{line}")
    return found, k


def landmark_images(folder: str | Path, valid_pct: float = 0.2, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """(train, valid) image paths: `folder/train` and `folder/valid`, or one folder split by `seed`."""
    folder = Path(folder)
    if (folder / "train").is_dir() and (folder / "valid").is_dir():
        train, valid = find_images(folder / "train"), find_images(folder / "valid")
    else:
        split = split_stratified([(p, 0) for p in find_images(folder)], valid_pct, seed)
        train, valid = ([p for p, _ in part] for part in split)
    if not train or not valid:
        raise DataError(f"{folder}: needs images to train and validate on (found {len(train)} and {len(valid)}); "
                        "add images or use train/ and valid/ folders")
    return train, valid


def landmark_targets(paths: list[Path], found: dict[Path, Points | None], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Targets `(N, 1 + 2K)`: p_c, then x/width, y/height per point (zeros without an object); sizes `(N, 2)`.

    Sizes are each image's (width, height) in pixels, to turn fractions back into pixel errors.
    """
    targets = np.zeros((len(paths), 1 + 2 * k), np.float32)
    sizes = np.zeros((len(paths), 2), np.float32)
    for i, path in enumerate(paths):
        sizes[i] = image_size(path)
        pts = found.get(Path(path).resolve())
        if pts is not None:
            targets[i, 0] = 1.0
            targets[i, 1:] = np.asarray(pts, np.float32) / np.tile(sizes[i], k)  # (2K,) as fractions
    return targets, sizes


def _triangle(rng: np.random.Generator, size: int, max_turn: float) -> list[tuple[float, float]]:
    """Vertices top, right, left of a triangle `size * (0.15..0.35)` in radius, turned up to +-`max_turn` degrees."""
    radius = rng.uniform(0.15, 0.35) * size
    cx, cy = (rng.uniform(radius + 1, size - radius - 1) for _ in range(2))
    turn = math.radians(rng.uniform(-max_turn, max_turn))
    angles = [-math.pi / 2, math.pi / 6, 5 * math.pi / 6]  # top, right (lower), left (lower); y points down
    stretch = rng.uniform(0.8, 1.0, 3)  # not always equilateral
    return [(cx + r * radius * math.cos(a + turn), cy + r * radius * math.sin(a + turn))
            for a, r in zip(angles, stretch)]


def write_landmark_shapes(folder: str | Path, images: int = 200, size: int = 96, seed: int = 0,
                          empty: float = 0.2, max_turn: float = 40.0) -> Path:
    """Write `images` PNGs `folder/NNNN.png` and `folder/landmarks.csv`; returns the CSV's path.

    A share `empty` of the images have no triangle (their row has no
    coordinates); the others one triangle whose K = 3 vertices are the
    landmarks, in the order top, right, left, in pixels. `max_turn` (degrees)
    stays under 60, where "top" and "right" would swap places.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for n in range(images):
        img = background(rng, size)
        name = f"{n:04d}.png"
        if rng.uniform() < empty:
            rows.append([name] + [""] * 6)
        else:
            vertices = _triangle(rng, size, max_turn)
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            ImageDraw.Draw(img).polygon(vertices, fill=colour)
            rows.append([name] + [f"{v:.1f}" for xy in vertices for v in xy])
        img.save(folder / name)
    path = folder / "landmarks.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "x1", "y1", "x2", "y2", "x3", "y3"])
        writer.writerows(rows)
    return path
