"""Object detection data: box annotations in Pascal VOC, YOLO and COCO form, read into one shape.

Every format becomes a list of `Annotation`s: the image path, its boxes as a
float32 `(n, 4)` array of `(x1, y1, x2, y2)` in pixels of the original
(upright) image, int64 labels `(n,)` indexing `DetectionData.classes`, and
the image size. The format conversions happen only here, at the edge:

- VOC: one XML per image, `<object><name>` and `<bndbox>` xmin..ymax in pixels;
- YOLO: one text file per image, lines `class cx cy w h` normalised to 0..1,
  class names from `classes.txt` or `data.yaml` `names:`;
- COCO: one JSON with `images`, `annotations` (`bbox` = x, y, w, h) and
  `categories` (ids in any order, mapped to 0..C-1 in id order).

`load_detection(root)` finds the layout on its own (see its docstring).
Annotation problems never stop loading: a bad box or a missing image is
skipped and described in one line of `DetectionData.problems`, naming the
file; only a folder with no usable layout is a `DataError`.
"""

from __future__ import annotations

import json
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from heron.data.folders import SPLIT_OF_FOLDER, valid_count
from heron.data.images import IMAGE_EXTENSIONS, image_size, scan_files
from heron.errors import DataError, ImageError

__all__ = [
    "Annotation",
    "DetectionData",
    "image_size",
    "load_detection",
    "read_coco",
    "read_voc",
    "read_yolo",
    "write_coco",
    "write_voc",
    "write_yolo",
]

# (class name, x1, y1, x2, y2) in pixels, as the readers return them.
Obj = tuple[str, float, float, float, float]
Record = tuple[Path, int, int, list[Obj]]

_LAYOUTS = ("images/ + annotations/ (VOC XML), images/ + labels/ (YOLO txt), images/ + a COCO .json, "
            "or a VOC devkit (JPEGImages/, Annotations/, ImageSets/Main/*.txt)")


@dataclass
class Annotation:
    """One image and its boxes: `boxes` float32 (n, 4) xyxy pixels, `labels` int64 (n,).

    `width`/`height` are the upright image size in pixels (0 while unknown).
    """

    path: Path
    boxes: np.ndarray
    labels: np.ndarray
    width: int = 0
    height: int = 0


@dataclass
class DetectionData:
    """A detection data set: class names, three splits of annotations, and what was skipped and why."""

    classes: list[str]
    train: list[Annotation]
    valid: list[Annotation]
    test: list[Annotation]
    format: str
    problems: list[str] = field(default_factory=list)

    def splits(self) -> dict[str, list[Annotation]]:
        return {"train": self.train, "valid": self.valid, "test": self.test}

    def summary(self) -> str:
        """A table of images and boxes per class per split, plus totals and the problem count."""
        splits = {k: v for k, v in self.splits().items() if v}
        total = sum(len(v) for v in splits.values())
        parts = ", ".join(f"{len(v)} {k}" for k, v in splits.items())
        lines = [f"{self.format} detection data: {len(self.classes)} classes, {total} images ({parts})"]
        width = max([len(c) for c in self.classes] + [10])
        lines.append(f"{'class':<{width}}" + "".join(f"  {k + ' img/box':>18}" for k in splits))
        for c, name in enumerate(self.classes):
            cells = [_class_counts(anns, c) for anns in splits.values()]
            lines.append(f"{name:<{width}}" + "".join(f"  {f'{i}/{b}':>18}" for i, b in cells))
        cells = [(len(anns), sum(len(a.labels) for a in anns)) for anns in splits.values()]
        lines.append(f"{'all':<{width}}" + "".join(f"  {f'{i}/{b}':>18}" for i, b in cells))
        lines.append(f"{len(self.problems)} problem line(s)" + (":" if self.problems else ""))
        lines.extend(f"  {p}" for p in self.problems[:20])
        if len(self.problems) > 20:
            lines.append(f"  ... and {len(self.problems) - 20} more")
        return "\n".join(lines)


def _class_counts(anns: list[Annotation], c: int) -> tuple[int, int]:
    """(images containing class c, boxes of class c)."""
    hits = [int((a.labels == c).sum()) for a in anns]
    return sum(1 for h in hits if h), sum(hits)


# ----------------------------------------------------------------- images


def _images_by_stem(image_dir: Path) -> dict[str, Path]:
    """{relative path without suffix ('sub/x'): image path} for every image under `image_dir`."""
    found = {}
    for p in scan_files(image_dir)[0]:
        rel = os.path.relpath(p, image_dir)
        found.setdefault(os.path.splitext(rel)[0].replace(os.sep, "/"), Path(p))
    return found


def _find_image(image_dir: Path, stem: str, filename: str | None = None) -> Path:
    """The image for an annotation: `filename` in image_dir if it exists, else `stem` with any image extension."""
    if filename:
        candidate = image_dir / filename
        if candidate.is_file():
            return candidate
    for ext in sorted(IMAGE_EXTENSIONS):
        for e in (ext, ext.upper()):
            candidate = image_dir / f"{stem}{e}"
            if candidate.is_file():
                return candidate
    return image_dir / (filename or f"{stem}.jpg")


# ----------------------------------------------------------------- VOC


def _text(node: ET.Element | None, tag: str, default: str | None = None) -> str | None:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text else default


def _read_voc(xml_path: Path, image_dir: Path) -> tuple[Record, list[bool]]:
    """`read_voc` plus the `difficult` flag of each object."""
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError) as err:
        raise DataError(f"{xml_path}: not readable VOC XML ({err}); fix or delete it") from None
    size = root.find("size")
    width, height = int(float(_text(size, "width", "0"))), int(float(_text(size, "height", "0")))
    objects, difficult = [], []
    for obj in root.iter("object"):
        name, bb = _text(obj, "name"), obj.find("bndbox")
        try:
            coords = [float(_text(bb, k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            raise DataError(f"{xml_path}: object {name!r} needs <bndbox> with xmin, ymin, xmax, ymax") from None
        objects.append((name or "", *coords))
        difficult.append(_text(obj, "difficult", "0") == "1")
    path = _find_image(image_dir, xml_path.stem, _text(root, "filename"))
    return (path, width, height, objects), difficult


def read_voc(xml_path: str | Path, image_dir: str | Path) -> Record:
    """One Pascal VOC XML file -> (image path, width, height, [(name, x1, y1, x2, y2), ...]).

    The image is `<filename>` in `image_dir`, else the XML's stem with any
    image extension. width/height are as the file states them (0 if absent).
    """
    return _read_voc(Path(xml_path), Path(image_dir))[0]


def write_voc(annotations: Sequence[Annotation], classes: Sequence[str], folder: str | Path) -> Path:
    """Write one VOC XML per annotation, `folder/<image stem>.xml`; returns `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for ann in annotations:
        root = ET.Element("annotation")
        ET.SubElement(root, "filename").text = ann.path.name
        size = ET.SubElement(root, "size")
        for tag, value in (("width", ann.width), ("height", ann.height), ("depth", 3)):
            ET.SubElement(size, tag).text = str(value)
        for box, label in zip(ann.boxes.tolist(), ann.labels.tolist()):
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = classes[label]
            ET.SubElement(obj, "difficult").text = "0"
            bb = ET.SubElement(obj, "bndbox")
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
                ET.SubElement(bb, tag).text = f"{value:g}"
        ET.indent(root)
        ET.ElementTree(root).write(folder / f"{ann.path.stem}.xml", encoding="utf-8")
    return folder


# ----------------------------------------------------------------- YOLO


def read_yolo(txt_path: str | Path, image_path: str | Path, classes: Sequence[str],
              problems: list[str] | None = None) -> Record:
    """One YOLO label file -> (image path, width, height, [(name, x1, y1, x2, y2), ...]) in pixels.

    Lines are `class cx cy w h` normalised to the image size, which is read
    from the image header (no decode). A malformed line or an unknown class
    index raises `DataError`, or, with a `problems` list, is skipped and
    described there. A missing label file means an image without objects.
    """
    txt_path, image_path = Path(txt_path), Path(image_path)
    width, height = image_size(image_path)
    lines = txt_path.read_text(encoding="utf-8").splitlines() if txt_path.is_file() else []
    objects = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        message = None
        try:
            index, cx, cy, w, h = (float(v) for v in line.split())  # exactly five numbers
            if index != int(index):
                raise ValueError
        except ValueError:  # includes a wrong count, e.g. a segmentation polygon
            message = f"{txt_path}:{n}: expected 'class cx cy w h', got {line.strip()[:60]!r}; line skipped"
        else:
            if not 0 <= index < len(classes):
                message = f"{txt_path}:{n}: class index {int(index)} not among the {len(classes)} classes; box skipped"
        if message:
            if problems is None:
                raise DataError(message)
            problems.append(message)
            continue
        objects.append((classes[int(index)], (cx - w / 2) * width, (cy - h / 2) * height,
                        (cx + w / 2) * width, (cy + h / 2) * height))
    return image_path, width, height, objects


def write_yolo(annotations: Sequence[Annotation], classes: Sequence[str], folder: str | Path,
               classes_file: str | Path | None = None) -> Path:
    """Write `folder/<image stem>.txt` per annotation and the class names (default `folder/../classes.txt`).

    Annotations need their width and height (the boxes are normalised by them).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for ann in annotations:
        if not (ann.width and ann.height):
            raise DataError(f"{ann.path}: width and height are needed to write YOLO labels; set them first")
        rows = []
        for (x1, y1, x2, y2), label in zip(ann.boxes.tolist(), ann.labels.tolist()):
            cx, cy = (x1 + x2) / 2 / ann.width, (y1 + y2) / 2 / ann.height
            w, h = (x2 - x1) / ann.width, (y2 - y1) / ann.height
            rows.append(f"{label} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
        (folder / f"{ann.path.stem}.txt").write_text("".join(rows), encoding="utf-8")
    Path(classes_file or folder.parent / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    return folder


def _yaml_names(path: Path) -> list[str] | None:
    """`names:` from a YOLO data.yaml without a YAML library: `[a, b]`, `- a` lines or `0: a` lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^names\s*:\s*(.*)$", line)
        if not m:
            continue
        rest = m.group(1).split("#")[0].strip()
        if rest.startswith("["):
            return [s.strip().strip("'\"") for s in rest.strip("[]").split(",") if s.strip()]
        names = {}
        for sub in lines[i + 1:]:
            item = re.match(r"^\s+(?:-\s*(.+)|(\d+)\s*:\s*(.+))$", sub)
            if not item:
                break
            key = len(names) if item.group(1) is not None else int(item.group(2))
            names[key] = (item.group(1) or item.group(3)).split("#")[0].strip().strip("'\"")
        return [names[k] for k in sorted(names)] or None
    return None


def _yolo_classes(root: Path, labels: Path) -> list[str] | None:
    """Class names from classes.txt (in root or labels/) or data.yaml `names:`; None when neither exists."""
    for path in (root / "classes.txt", labels / "classes.txt", root / "obj.names"):
        if path.is_file():
            return [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
    for name in ("data.yaml", "dataset.yaml", "data.yml"):
        if (root / name).is_file():
            return _yaml_names(root / name)
    return None


def _max_yolo_index(labels: Path) -> int:
    """The largest class index used in any label file (-1 when none), for class0..N names."""
    top = -1
    for p in labels.rglob("*.txt"):
        for line in p.read_text(encoding="utf-8").splitlines():
            head = line.split()[:1]
            if head and head[0].isdigit():
                top = max(top, int(head[0]))
    return top


# ----------------------------------------------------------------- COCO


def read_coco(json_path: str | Path, image_dir: str | Path,
              problems: list[str] | None = None) -> tuple[list[str], list[Record]]:
    """A COCO JSON -> (class names in category id order, [(path, w, h, [(name, x1, y1, x2, y2)]), ...]).

    `bbox` is (x, y, w, h) in pixels. Annotations of an unknown image or
    category raise `DataError`, or with a `problems` list are skipped and
    described there.
    """
    json_path, image_dir = Path(json_path), Path(image_dir)
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
        cats = sorted(data["categories"], key=lambda c: c["id"])
        names = {c["id"]: str(c["name"]) for c in cats}
        images = {im["id"]: (image_dir / im["file_name"], int(im.get("width", 0)), int(im.get("height", 0)), [])
                  for im in data["images"]}
        anns = data.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{json_path}: not a COCO detection file ({err!r}); it needs images, annotations "
                        f"and categories") from None
    for n, a in enumerate(anns):
        image, cat = images.get(a.get("image_id")), names.get(a.get("category_id"))
        if image is None or cat is None:
            what = "image_id" if image is None else "category_id"
            message = f"{json_path}: annotation {n} has unknown {what} {a.get(what)!r}; skipped"
            if problems is None:
                raise DataError(message)
            problems.append(message)
            continue
        x, y, w, h = (float(v) for v in a["bbox"])
        image[3].append((cat, x, y, x + w, y + h))
    return [names[c["id"]] for c in cats], list(images.values())


def write_coco(annotations: Sequence[Annotation], classes: Sequence[str], json_path: str | Path,
               image_dir: str | Path | None = None) -> Path:
    """Write one COCO JSON (category ids 1..C); file names relative to `image_dir` (default: the json's folder)."""
    json_path = Path(json_path)
    image_dir = Path(image_dir) if image_dir is not None else json_path.parent
    images, anns = [], []
    for i, ann in enumerate(annotations, start=1):
        name = os.path.relpath(ann.path, image_dir).replace(os.sep, "/")
        images.append({"id": i, "file_name": name, "width": ann.width, "height": ann.height})
        for (x1, y1, x2, y2), label in zip(ann.boxes.tolist(), ann.labels.tolist()):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": label + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    cats = [{"id": c + 1, "name": name} for c, name in enumerate(classes)]
    json_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    tmp.replace(json_path)
    return json_path


# ----------------------------------------------------------------- checks


def _check_box(source: Path, name: str, box: tuple[float, ...], width: int, height: int,
               problems: list[str]) -> tuple[float, float, float, float] | None:
    """The box clipped to the image, or None (with a problem line) when it has no area left."""
    x1, y1, x2, y2 = box
    where = f"{source}: box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) of {name!r}"
    if not all(math.isfinite(v) for v in box):
        problems.append(f"{where} is not finite; skipped")
        return None
    if x2 <= x1 or y2 <= y1:
        problems.append(f"{where} has zero or negative area; skipped")
        return None
    cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    if (cx1, cy1, cx2, cy2) == (x1, y1, x2, y2):
        return x1, y1, x2, y2
    if cx2 <= cx1 or cy2 <= cy1:
        problems.append(f"{where} lies outside the {width}x{height} image; skipped")
        return None
    problems.append(f"{where} goes outside the {width}x{height} image; clipped")
    return cx1, cy1, cx2, cy2


def _annotation(record: Record, source: Path, index: dict[str, int], problems: list[str],
                sized: bool = False) -> Annotation | None:
    """Check one record against its image and the classes; None when the image is unusable.

    `sized`: the record's size was read from the image's own header (YOLO's), not stated by a file.
    """
    path, stated_w, stated_h, objects = record
    if sized:
        width, height = stated_w, stated_h
    else:
        try:
            width, height = image_size(path)
        except ImageError as err:
            problems.append(f"{source}: image skipped: {err}")
            return None
    if stated_w and stated_h and (stated_w, stated_h) != (width, height):
        problems.append(f"{source}: states size {stated_w}x{stated_h} but {path.name} is {width}x{height}; "
                        f"boxes kept as written, clipped to the image")
    boxes, labels = [], []
    for name, *coords in objects:
        if name not in index:
            problems.append(f"{source}: class {name!r} is not among the classes; box skipped")
            continue
        box = _check_box(source, name, tuple(coords), width, height, problems)
        if box is not None:
            boxes.append(box)
            labels.append(index[name])
    return Annotation(path=path, boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                      labels=np.asarray(labels, np.int64), width=width, height=height)


# ----------------------------------------------------------------- layouts


@dataclass
class _Found:
    """What one folder holds before the checks: records with their annotation file, plus split names."""

    format: str
    records: list[tuple[Record, Path]]
    classes: list[str] | None = None  # fixed by the files (YOLO, COCO); None: from the names used (VOC)
    splits: dict[str, list[str]] | None = None  # devkit ImageSets/Main: split -> image stems
    notes: list[str] = field(default_factory=list)
    sized: bool = False  # the records' sizes come from the images' headers (nothing to check them against)


def _devkit_root(root: Path) -> Path | None:
    for cand in [root] + sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (cand / "JPEGImages").is_dir() and (cand / "Annotations").is_dir():
            return cand
    return None


def _voc_records(xml_dir: Path, image_dir: Path, problems: list[str]) -> tuple[list, list[str]]:
    """VOC records for every XML plus background records for images without one."""
    images = _images_by_stem(image_dir)
    records, seen, difficult = [], set(), 0
    for xml in sorted(xml_dir.rglob("*.xml")):
        stem = xml.relative_to(xml_dir).with_suffix("").as_posix()
        try:
            record, flags = _read_voc(xml, image_dir / Path(stem).parent)
        except DataError as err:
            problems.append(f"{err}; its image is skipped")
            seen.add(stem)  # not a background image: its objects are unknown
            continue
        if stem in images and not record[0].is_file():
            record = (images[stem], *record[1:])
        seen.add(stem)
        difficult += sum(flags)
        records.append((record, xml))
    records += [((p, 0, 0, []), p) for s, p in images.items() if s not in seen]
    notes = [f"{xml_dir}: {difficult} box(es) marked difficult are kept as ordinary boxes"] if difficult else []
    return records, notes


def _read_split_files(main: Path) -> dict[str, list[str]] | None:
    if not main.is_dir():
        return None
    splits = {n: [s.split()[0] for s in (main / f"{n}.txt").read_text().splitlines() if s.strip()]
              for n in ("train", "val", "trainval", "test") if (main / f"{n}.txt").is_file()}
    return splits or None


def _find_devkit(root: Path, problems: list[str]) -> _Found:
    records, notes = _voc_records(root / "Annotations", root / "JPEGImages", problems)
    return _Found("voc", records, splits=_read_split_files(root / "ImageSets" / "Main"), notes=notes)


def _find_yolo(root: Path, classes: list[str] | None, problems: list[str]) -> _Found:
    labels, images = root / "labels", root / "images"
    names = classes or _yolo_classes(root, labels)
    notes = []
    if names is None:
        names = [f"class{i}" for i in range(_max_yolo_index(labels) + 1)]
        notes.append(f"{root}: no classes.txt or data.yaml names; classes called class0..class{len(names) - 1}")
    records = []
    for stem, image in _images_by_stem(images).items():
        txt = labels / f"{stem}.txt"
        try:
            records.append((read_yolo(txt, image, names, problems), txt if txt.is_file() else image))
        except ImageError as err:
            problems.append(f"{txt}: image skipped: {err}")
        except (OSError, UnicodeDecodeError) as err:
            problems.append(f"{txt}: unreadable label file ({err}); image skipped")
    return _Found("yolo", records, classes=list(names), notes=notes, sized=True)


def _coco_file(root: Path) -> Path | None:
    cands = sorted(root.glob("*.json")) + sorted((root / "annotations").glob("*.json"))
    named = [p for p in cands if p.name == "annotations.json" or p.name.startswith("instances")]
    pick = named or cands
    if len(pick) > 1:
        raise DataError(f"{root}: several COCO files ({', '.join(p.name for p in pick)}); keep one per folder "
                        f"and pass the other split's folder as valid=")
    return pick[0] if pick else None


def _coco_path(root: Path, path: Path) -> Path:
    """`path` (images/<file_name>), or root/<file_name> when only that exists."""
    alt = root / os.path.relpath(path, root / "images")
    return alt if not path.is_file() and alt.is_file() else path


def _find_coco(root: Path, json_path: Path, problems: list[str]) -> _Found:
    """COCO records; a file_name given relative to root ('images/a.jpg') is accepted too."""
    names, records = read_coco(json_path, root / "images", problems)
    records = [(_coco_path(root, p), *rest) for p, *rest in records]
    listed = {os.path.realpath(r[0]) for r in records}
    unlisted = sum(1 for p in scan_files(root / "images")[0] if os.path.realpath(p) not in listed)
    notes = [f"{json_path}: {unlisted} image(s) in images/ are not listed in it; not used"] if unlisted else []
    return _Found("coco", [(r, json_path) for r in records], classes=names, notes=notes)


def _find(root: Path, classes: list[str] | None, problems: list[str]) -> _Found:
    """Detect the layout of `root` and read its annotation files."""
    if not root.is_dir():
        raise DataError(f"{root}: folder not found; pass a folder holding {_LAYOUTS}")
    devkit = _devkit_root(root)
    if devkit is not None:
        return _find_devkit(devkit, problems)
    if (root / "JPEGImages").is_dir():
        raise DataError(f"{root}: JPEGImages/ has no Annotations/ (VOC XML) next to it; add it, or use {_LAYOUTS}")
    if not (root / "images").is_dir():
        raise DataError(f"{root}: no images/ or JPEGImages/ folder; expected {_LAYOUTS}")
    if not _has_images(root / "images"):
        raise DataError(f"{root / 'images'}: no image files found; expected {_LAYOUTS}")
    if (root / "annotations").is_dir() and any((root / "annotations").rglob("*.xml")):
        records, notes = _voc_records(root / "annotations", root / "images", problems)
        return _Found("voc", records, notes=notes)
    if (root / "labels").is_dir():
        return _find_yolo(root, classes, problems)
    json_path = _coco_file(root)
    if json_path is not None:
        return _find_coco(root, json_path, problems)
    raise DataError(f"{root}: images/ has no annotations next to it; add annotations/ (VOC XML), "
                    f"labels/ (YOLO txt) or a COCO .json")


def _has_images(folder: Path) -> bool:
    return bool(scan_files(folder)[0])


def _check_all(found: _Found, index: dict[str, int], problems: list[str]) -> list[Annotation]:
    anns = [_annotation(rec, src, index, problems, found.sized) for rec, src in found.records]
    return [a for a in anns if a is not None]


def _split_random(anns: list[Annotation], valid_pct: float, seed: int) -> tuple[list, list]:
    """A seeded split: `valid_count` images to valid, the rest to train (both in path order)."""
    order = np.random.default_rng(seed).permutation(len(anns))
    n_valid = valid_count(len(anns), valid_pct)
    chosen = set(order[:n_valid].tolist())
    return ([a for i, a in enumerate(anns) if i not in chosen], [a for i, a in enumerate(anns) if i in chosen])


def _split_devkit(anns: list[Annotation], splits: dict[str, list[str]], valid_pct: float, seed: int,
                  problems: list[str]) -> tuple[list, list, list]:
    """train/valid/test from ImageSets/Main split files (lists of image stems).

    train.txt -> train, val.txt -> valid, test.txt -> test. Without
    train.txt, train is trainval.txt (else every image not in test.txt) less
    val.txt, and without val.txt `valid_pct` of it, chosen with `seed`.
    """
    by_stem = {a.path.stem: a for a in anns}

    def pick(name: str) -> list[Annotation]:
        return [by_stem[s] for s in splits.get(name, []) if s in by_stem]

    test = pick("test")
    if "train" in splits:
        train, valid = pick("train"), pick("val")
    else:
        held = set(splits.get("test", [])) | set(splits.get("val", []))
        pool = pick("trainval") if "trainval" in splits else anns
        pool = [a for a in pool if a.path.stem not in held]
        train, valid = (pool, pick("val")) if "val" in splits else _split_random(pool, valid_pct, seed)
    listed = {id(a) for a in train + valid + test}
    unlisted = len(anns) - len(listed)
    if unlisted:
        problems.append(f"{unlisted} image(s) in no ImageSets/Main split file; not used")
    return train, valid, test


def _split_folders(anns: list[Annotation], image_dir: Path) -> tuple[list, list, list] | None:
    """train/valid/test from images/{train,val,test}/ (the Ultralytics layout); None when not split so."""
    out: dict[str, list[Annotation]] = {"train": [], "valid": [], "test": []}
    for a in anns:
        try:
            top = a.path.relative_to(image_dir).parts[0].lower()
        except ValueError:
            return None
        if top not in SPLIT_OF_FOLDER:
            return None
        out[SPLIT_OF_FOLDER[top]].append(a)
    return (out["train"], out["valid"], out["test"]) if out["train"] else None


def _split(found: _Found, anns: list[Annotation], image_dir: Path, valid: list[Annotation] | None,
           valid_pct: float, seed: int, problems: list[str]) -> tuple[list, list, list]:
    """(train, valid, test): a `valid` folder, else split files, else split folders, else seeded valid_pct.

    A devkit's test.txt still sets the test split when a `valid` folder is given;
    split folders without a valid one get `valid_pct` of their train images.
    """
    if valid is not None:
        test_stems = set((found.splits or {}).get("test", []))
        return ([a for a in anns if a.path.stem not in test_stems], valid,
                [a for a in anns if a.path.stem in test_stems])
    if found.splits:
        return _split_devkit(anns, found.splits, valid_pct, seed, problems)
    folders = _split_folders(anns, image_dir)
    if folders is not None and folders[1]:
        return folders
    train, valid_set = _split_random(folders[0] if folders else anns, valid_pct, seed)
    return train, valid_set, folders[2] if folders else []


def _class_index(found: list[_Found], classes: Sequence[str] | None) -> list[str]:
    if classes is not None:
        return list(classes)
    fixed = next((f.classes for f in found if f.classes is not None), None)
    if fixed is not None:
        return list(fixed)
    return sorted({obj[0] for f in found for rec, _ in f.records for obj in rec[3]})


def _background_note(anns: list[Annotation], problems: list[str]) -> None:
    empty = sum(1 for a in anns if len(a.labels) == 0)
    if empty:
        problems.append(f"{empty} image(s) have no boxes; kept as background images")


def load_detection(root: str | Path, valid: str | Path | None = None, valid_pct: float = 0.2, seed: int = 0,
                   classes: Sequence[str] | None = None) -> DetectionData:
    """Read a detection data set from a folder, finding its layout on its own.

    Layouts (checked in this order):
    - VOC devkit: `JPEGImages/`, `Annotations/` and optionally
      `ImageSets/Main/{train,val,trainval,test}.txt`, at `root` or one folder
      down (`train.txt` -> train, `val.txt` -> valid, `test.txt` -> test;
      only `trainval.txt` -> split by `valid_pct`);
    - `images/` + `annotations/*.xml` (VOC);
    - `images/` + `labels/*.txt` (YOLO; names from classes.txt, data.yaml
      `names:`, else class0..N);
    - `images/` + one COCO JSON (`annotations.json`, `instances_*.json`, at
      root or in annotations/).

    With `images/{train,val,test}/` (and the annotations mirrored under
    `annotations/` or `labels/`, the Ultralytics layout) those folders are
    the splits. `valid`, a second folder in the same layout, is the
    validation split; without it (and without split files or folders)
    `valid_pct` of the images, chosen with `seed`, are. `classes` fixes the class names and order; boxes of
    other classes are skipped. Without it VOC names are those used (sorted),
    COCO's are its categories in id order.

    Bad boxes, unknown classes, missing or unreadable images are skipped and
    described in `problems`; a folder with no usable layout or no usable
    image raises `DataError`.
    """
    problems: list[str] = []
    main = _find(Path(root), list(classes) if classes else None, problems)
    extra = _find(Path(valid), list(classes) if classes else None, problems) if valid is not None else None
    names = _class_index([main] + ([extra] if extra else []), classes)
    index = {n: i for i, n in enumerate(names)}
    anns = _check_all(main, index, problems)
    if not anns:
        first = f"; first problem: {problems[0]}" if problems else ""
        raise DataError(f"{root}: no usable images ({len(problems)} problem(s){first}); expected {_LAYOUTS}")
    valid_anns = _check_all(extra, index, problems) if extra is not None else None
    train, valid_set, test = _split(main, anns, Path(root) / "images", valid_anns, valid_pct, seed, problems)
    _background_note(train + valid_set + test, problems)
    problems.extend(main.notes + (extra.notes if extra else []))
    return DetectionData(classes=names, train=train, valid=valid_set, test=test, format=main.format,
                         problems=problems)
