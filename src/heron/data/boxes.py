"""Bounding boxes per image from a CSV or JSON file, in (x1, y1, x2, y2) pixels.

Accepted forms:
- CSV with a header naming `file` (or `path`/`image`/`filename`) and `x1, y1,
  x2, y2` (or `xmin, ymin, xmax, ymax`); one row per box, other columns
  ignored; a file may appear on several rows;
- JSON: `{"file.jpg": [[x1, y1, x2, y2], ...], ...}` or a list of
  `{"file": ..., "boxes": [[...], ...]}`.
File names are relative to `image_root` (default: the box file's folder).
`largest_boxes` keeps one box per image, the one with the largest area, for
models that predict a single object.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from heron.errors import DataError

__all__ = ["read_boxes", "largest_boxes"]

Box = tuple[float, float, float, float]
_FILE_COLUMNS = ("file", "path", "image", "filename")
_CORNERS = (("x1", "y1", "x2", "y2"), ("xmin", "ymin", "xmax", "ymax"))


def _key(root: Path, name: str) -> Path:
    return (root / name).resolve()


def _box(values, where: str) -> Box:
    try:
        x1, y1, x2, y2 = (float(v) for v in values)
    except (TypeError, ValueError):
        raise DataError(f"{where}: a box needs four numbers x1, y1, x2, y2, got {values!r}") from None
    if x2 <= x1 or y2 <= y1:
        raise DataError(f"{where}: box {values!r} has no area (x2 <= x1 or y2 <= y1); fix or drop it")
    return x1, y1, x2, y2


def _columns(path: Path, header: list[str]) -> tuple[int, list[int]]:
    lower = [h.strip().lower() for h in header]
    file_col = next((lower.index(c) for c in _FILE_COLUMNS if c in lower), None)
    corners = next(([lower.index(c) for c in names] for names in _CORNERS if set(names) <= set(lower)), None)
    if file_col is None or corners is None:
        raise DataError(f"{path}: the header must name a file column ({', '.join(_FILE_COLUMNS)}) and "
                        f"x1, y1, x2, y2 (or xmin, ymin, xmax, ymax); it has {', '.join(header)}")
    return file_col, corners


def _read_csv(path: Path, root: Path) -> dict[Path, list[Box]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise DataError(f"{path}: empty box file; write a header and one row per box")
    file_col, corners = _columns(path, rows[0])
    boxes: dict[Path, list[Box]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) <= max(file_col, *corners):
            raise DataError(f"{path}:{line}: expected {len(rows[0])} columns, got {len(row)}")
        box = _box([row[i] for i in corners], f"{path}:{line}")
        boxes.setdefault(_key(root, row[file_col].strip()), []).append(box)
    return boxes


def _read_json(path: Path, root: Path) -> dict[Path, list[Box]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not readable JSON ({err}); see heron.data.boxes for the forms accepted") from None
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list) and all(isinstance(d, dict) and "file" in d for d in data):
        items = [(d["file"], d.get("boxes", [])) for d in data]
    else:
        raise DataError(f"{path}: expected {{file: [[x1, y1, x2, y2], ...]}} or [{{'file': ..., 'boxes': [...]}}]")
    return {_key(root, name): [_box(b, f"{path}: {name}") for b in boxes] for name, boxes in items}


def read_boxes(path: str | Path, image_root: str | Path | None = None) -> dict[Path, list[Box]]:
    """`{resolved image path: [box, ...]}` from a CSV or JSON box file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: box file not found; give a CSV (file,x1,y1,x2,y2) or JSON of boxes per image")
    root = Path(image_root) if image_root else path.parent
    return _read_json(path, root) if path.suffix.lower() == ".json" else _read_csv(path, root)


def largest_boxes(boxes: dict[Path, list[Box]]) -> dict[Path, Box]:
    """One box per image: the one with the largest area."""
    return {p: max(bs, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])) for p, bs in boxes.items() if bs}
