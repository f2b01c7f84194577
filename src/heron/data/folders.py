"""Finding a labelled image dataset on disk: which files, which classes, which split.

`heron train DATA` accepts the three layouts people already have:

(a) ``DATA/train/<class>/*`` and ``DATA/valid/<class>/*`` (``val`` and
    ``validation`` work too); an optional ``DATA/test/`` of unlabelled images,
    flat or in sub-folders. Without a valid folder, train is split.
(b) ``DATA/<class>/*``: heron holds out ``valid_pct`` of every class
    (stratified, seeded). A ``DATA/test/`` folder is again the test set.
(c) a CSV file of ``path,label`` (header optional), paths relative to the
    CSV's folder or to ``image_root``. A label with several space-separated
    names (``"cat outdoor"``) makes the dataset multi-label. An optional third
    column ``is_valid`` (1/0, true/false) or ``split`` (train/valid/test) fixes
    the split; otherwise it is stratified as in (b).

`discover` only lists files (fast on 100k images); decoding, and so finding
corrupt files, is `heron.data.images.load_image`'s job. Every mistake a user
can make in the layout raises `DataError` with one line naming the folder or
file and the fix; things that deserve attention but not a stop (tiny or
imbalanced classes, unlabelled or ignored files) end up in `.warnings`.
"""

from __future__ import annotations

import csv
import math
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from heron.data.images import IMAGE_EXTENSIONS, find_images, is_image_file, scan_files
from heron.errors import DataError

__all__ = ["DataSplits", "Label", "Sample", "SPLIT_OF_FOLDER", "discover", "split_stratified", "valid_count"]

Label = int | tuple[int, ...]  # class index, or sorted class indices when multi-label
Sample = tuple[Path, Label]

_TRAIN_NAMES = ("train", "training")
_VALID_NAMES = ("valid", "val", "validation")
_TEST_NAMES = ("test", "testing")
SPLIT_OF_FOLDER = {**{n: "train" for n in _TRAIN_NAMES}, **{n: "valid" for n in _VALID_NAMES},
                   **{n: "test" for n in _TEST_NAMES}}  # a folder's name (lower case) -> the split it holds

_PATH_HEADERS = {
    "path", "file", "filename", "file_name", "filepath", "fname",
    "image", "image_path", "img", "name", "id", "image_id",
}
_LABEL_HEADERS = {"label", "labels", "class", "classes", "category", "target", "tags", "y"}
_SPLIT_HEADERS = {"is_valid", "valid", "is_val", "validation", "split"}
_SPLIT_VALUES = {
    "1": "valid", "true": "valid", "t": "valid", "yes": "valid", "y": "valid",
    "valid": "valid", "val": "valid", "validation": "valid",
    "0": "train", "false": "train", "f": "train", "no": "train", "n": "train",
    "train": "train", "training": "train", "": "train",
    "test": "test", "testing": "test",
}
_IMBALANCE_RATIO = 10
_EXAMPLES = 3  # file names quoted in a warning


# ------------------------------------------------------------------ result


@dataclass
class DataSplits:
    """A dataset found on disk: file lists per split, class names, and what to look at.

    `train` and `valid` hold `(path, label)`: `label` is a class index into
    `classes` (sorted names), or a sorted tuple of indices when `multilabel`.
    `test` holds unlabelled paths. `layout` says which layout was recognised.
    """

    classes: list[str]
    train: list[Sample]
    valid: list[Sample]
    test: list[Path]
    multilabel: bool
    root: Path
    warnings: list[str] = field(default_factory=list)
    layout: str = ""
    skipped: list[str] = field(default_factory=list)  # one line per listed file that was not used

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> dict[str, dict[str, int]]:
        """`{class: {"train": n, "valid": n}}`; multi-label counts images holding the label."""
        counts = {name: {"train": 0, "valid": 0} for name in self.classes}
        for split, samples in (("train", self.train), ("valid", self.valid)):
            for _, label in samples:
                for index in _indices(label):
                    counts[self.classes[index]][split] += 1
        return counts

    def balance_table(self) -> str:
        """Per-class image counts in train and valid, as an aligned text table."""
        counts = self.class_counts()
        rows = [(name, c["train"], c["valid"], c["train"] + c["valid"]) for name, c in counts.items()]
        rows.append(("all images", len(self.train), len(self.valid), len(self.train) + len(self.valid)))
        width = max(len("class"), *(len(r[0]) for r in rows))
        lines = [f"{'class':<{width}}  {'train':>7}  {'valid':>7}  {'total':>7}"]
        lines += [f"{name:<{width}}  {tr:>7}  {va:>7}  {to:>7}" for name, tr, va, to in rows]
        if self.multilabel:
            lines.append("(multi-label: an image counts once for each of its labels)")
        if self.test:
            lines.append(f"test: {len(self.test)} unlabelled images")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"DataSplits(layout={self.layout!r}, root={str(self.root)!r}, classes={self.num_classes}, "
            f"train={len(self.train)}, valid={len(self.valid)}, test={len(self.test)}, "
            f"multilabel={self.multilabel}, warnings={len(self.warnings)})"
        )


def _path_key(sample: Sample) -> str:
    return os.fspath(sample[0])


def _indices(label: Label) -> tuple[int, ...]:
    return label if isinstance(label, tuple) else (label,)


# ------------------------------------------------------------------- split


def valid_count(n: int, valid_pct: float) -> int:
    """How many of `n` items a `valid_pct` split holds out: round half up, at least one on each side of two."""
    if n < 2 or valid_pct == 0:
        return 0
    return min(max(math.floor(n * valid_pct + 0.5), 1), n - 1)


def _stratum(label: Label, totals: Counter) -> int:
    """The class a sample is stratified by: itself, or its rarest label when multi-label."""
    return min(_indices(label), key=lambda c: (totals[c], c))


def _move_one(src: list[Sample], dst: list[Sample], cls: int) -> None:
    """Move one sample holding `cls` from src to dst without emptying another class in src."""
    in_src = Counter(c for _, label in src for c in _indices(label))
    for i, (_, label) in enumerate(src):
        if cls in _indices(label) and all(in_src[c] >= 2 for c in _indices(label) if c != cls):
            dst.append(src.pop(i))
            return


def _repair_multilabel(train: list[Sample], valid: list[Sample], totals: Counter) -> None:
    """Give every label with >= 2 images at least one image in each split, where possible."""
    for cls in sorted(totals):
        if totals[cls] < 2:
            continue
        if not any(cls in _indices(label) for _, label in valid):
            _move_one(train, valid, cls)
        if not any(cls in _indices(label) for _, label in train):
            _move_one(valid, train, cls)


def split_stratified(
    samples: list[Sample], valid_pct: float = 0.2, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Split `(path, label)` pairs into (train, valid), `valid_pct` of every class in valid.

    Each class gets `round(n * valid_pct)` validation images, but at least 1
    and at most n - 1 when it has n >= 2 images (a class with one image stays
    in train); `valid_pct=0` keeps everything in train. Each class is shuffled
    by its own generator seeded by `seed` and the class index, so the result
    depends only on the seed and the files, and adding a class does not
    reshuffle the others. Multi-label samples are stratified by their rarest
    label, then repaired so every label with >= 2 images appears in both
    splits where the data allow. Both lists come back sorted by path.
    """
    if not 0.0 <= valid_pct < 1.0:
        raise DataError(f"valid_pct must be at least 0 and below 1 (got {valid_pct}); e.g. 0.2 holds out 20%")
    totals = Counter(c for _, label in samples for c in _indices(label))
    strata: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        strata[_stratum(sample[1], totals)].append(sample)
    train: list[Sample] = []
    valid: list[Sample] = []
    for key in sorted(strata):
        group = sorted(strata[key], key=_path_key)
        random.Random(f"heron-split:{seed}:{key}").shuffle(group)
        k = valid_count(len(group), valid_pct)
        valid += group[:k]
        train += group[k:]
    if valid_pct > 0 and any(isinstance(label, tuple) for _, label in samples):
        _repair_multilabel(train, valid, totals)
    return sorted(train, key=_path_key), sorted(valid, key=_path_key)


# ------------------------------------------------------------ checks, notes


@dataclass(frozen=True)
class _Options:
    """discover()'s settings, handed down to every layout reader."""

    valid_pct: float
    seed: int
    min_per_class_warn: int
    min_classes: int


def _examples(paths: list[str] | list[Path]) -> str:
    shown = ", ".join(str(p) for p in paths[:_EXAMPLES])
    return shown + (", ..." if len(paths) > _EXAMPLES else "")


def _class_warnings(classes: list[str], samples: list[Sample], min_per_class: int) -> list[str]:
    """Warnings for classes with few images and for a large spread between classes."""
    counts = Counter(c for _, label in samples for c in _indices(label))
    sizes = {name: counts[i] for i, name in enumerate(classes)}
    notes = []
    small = sorted((n, name) for name, n in sizes.items() if n < min_per_class)
    if small:
        listed = ", ".join(f"{name} ({n})" for n, name in small[:10]) + (", ..." if len(small) > 10 else "")
        notes.append(
            f"{len(small)} class(es) have fewer than {min_per_class} images: {listed}; "
            f"add images to them or expect poor accuracy there"
        )
    big_name = max(sizes, key=lambda k: (sizes[k], k))
    low_name = min(sizes, key=lambda k: (sizes[k], k))
    if sizes[low_name] and sizes[big_name] / sizes[low_name] > _IMBALANCE_RATIO:
        notes.append(
            f"classes are imbalanced: '{big_name}' has {sizes[big_name]} images, '{low_name}' only "
            f"{sizes[low_name]} ({sizes[big_name] / sizes[low_name]:.0f}x); collect more of the small "
            f"classes or weight the loss"
        )
    return notes


def _check_usable(where: Path, classes: list[str], train: list[Sample], valid: list[Sample], opts: _Options) -> None:
    if not classes:
        raise DataError(f"{where}: no labelled images found; see `heron train --help` for the layouts")
    if len(classes) < opts.min_classes:
        found = "one class" if len(classes) == 1 else f"{len(classes)} classes"
        names = ", ".join(f"'{c}'" for c in classes)
        raise DataError(f"{where}: only {found} ({names}) found; a classifier needs at least {opts.min_classes}")
    if not train:
        raise DataError(f"{where}: no training images; add images to train")
    if not valid and opts.valid_pct > 0:
        raise DataError(f"{where}: too few images to hold out a validation set; add images (2+ per class)")


def _finish(
    layout: str, where: Path, root: Path, classes: list[str], train: list[Sample], valid: list[Sample],
    test: list[Path], multilabel: bool, warnings: list[str], opts: _Options,
) -> DataSplits:
    """Check the result is trainable (errors name `where`), add class warnings, build DataSplits."""
    _check_usable(where, classes, train, valid, opts)
    warnings = warnings + _class_warnings(classes, train + valid, opts.min_per_class_warn)
    return DataSplits(classes, train, valid, sorted(test), multilabel, root, warnings, layout)


# ----------------------------------------------------------- folder layouts


def _child_dirs(folder: Path) -> list[Path]:
    """Visible sub-folders, sorted."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _pick(dirs: list[Path], names: tuple[str, ...], root: Path) -> Path | None:
    """The one sub-folder called any of `names` (case-insensitive), None if absent."""
    found = [d for d in dirs if d.name.lower() in names]
    if len(found) > 1:
        listed = " and ".join(f"'{p.name}'" for p in found)
        raise DataError(f"{root}: has both {listed} folders; keep one of them")
    return found[0] if found else None


def _read_class_folders(folder: Path, skip: tuple[Path, ...] = ()) -> tuple[dict[str, list[Path]], list[str]]:
    """`{class name: images}` from the sub-folders of `folder`, plus warnings about ignored files."""
    loose, ignored = scan_files(folder, recursive=False)
    classes: dict[str, list[Path]] = {}
    for sub in _child_dirs(folder):
        if sub in skip:
            continue
        images, others = scan_files(sub)
        if not images:
            hint = f" (only non-image files such as {os.path.basename(others[0])})" if others else ""
            raise DataError(f"{sub}: class folder '{sub.name}' has no images{hint}; add images or remove the folder")
        classes[sub.name] = [Path(p) for p in images]
        ignored += others
    notes = []
    if loose and classes:
        notes.append(
            f"{len(loose)} image(s) directly in {folder} are in no class folder and are ignored: {_examples(loose)}"
        )
    if ignored:
        notes.append(f"{len(ignored)} file(s) without an image extension are ignored: {_examples(ignored)}")
    if not classes:
        if loose:
            raise DataError(
                f"{folder}: images but no class folders; move them into {folder}/<class>/ or give a CSV of path,label"
            )
        raise DataError(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return classes, notes


def _samples(by_class: dict[str, list[Path]], classes: list[str]) -> list[Sample]:
    index = {name: i for i, name in enumerate(classes)}
    return [(path, index[name]) for name, paths in by_class.items() for path in paths]


def _class_difference(train: set[str], valid: set[str]) -> str:
    parts = []
    if train - valid:
        parts.append(f"only in train: {', '.join(sorted(train - valid))}")
    if valid - train:
        parts.append(f"only in valid: {', '.join(sorted(valid - train))}")
    return "; ".join(parts)


def _read_test(test_dir: Path | None) -> tuple[list[Path], list[str]]:
    if test_dir is None:
        return [], []
    test = find_images(test_dir)
    return test, ([] if test else [f"{test_dir}: test folder has no images; it is ignored"])


def _train_valid_layout(root: Path, dirs: list[Path], opts: _Options) -> DataSplits:
    train_dir = _pick(dirs, _TRAIN_NAMES, root)
    valid_dir = _pick(dirs, _VALID_NAMES, root)
    test, notes = _read_test(_pick(dirs, _TEST_NAMES, root))
    train_by_class, more = _read_class_folders(train_dir)
    notes += more
    if valid_dir is None:
        classes = sorted(train_by_class)
        train, valid = split_stratified(_samples(train_by_class, classes), opts.valid_pct, opts.seed)
        layout = "train folder, split"
    else:
        valid_by_class, more = _read_class_folders(valid_dir)
        notes += more
        if set(train_by_class) != set(valid_by_class):
            diff = _class_difference(set(train_by_class), set(valid_by_class))
            raise DataError(f"{root}: train and valid have different class folders ({diff}); make them match")
        classes = sorted(train_by_class)
        train = sorted(_samples(train_by_class, classes), key=_path_key)
        valid = sorted(_samples(valid_by_class, classes), key=_path_key)
        layout = "train/valid folders"
    return _finish(layout, root, root, classes, train, valid, test, False, notes, opts)


def _class_folder_layout(root: Path, dirs: list[Path], opts: _Options) -> DataSplits:
    test_dir = _pick(dirs, _TEST_NAMES, root)
    test, notes = _read_test(test_dir)
    by_class, more = _read_class_folders(root, skip=(test_dir,) if test_dir else ())
    classes = sorted(by_class)
    train, valid = split_stratified(_samples(by_class, classes), opts.valid_pct, opts.seed)
    notes += more
    return _finish("class folders, split", root, root, classes, train, valid, test, False, notes, opts)


def _discover_folder(root: Path, opts: _Options) -> DataSplits:
    dirs = _child_dirs(root)
    if any(d.name.lower() in _TRAIN_NAMES for d in dirs):
        return _train_valid_layout(root, dirs, opts)
    valid_dir = _pick(dirs, _VALID_NAMES, root)
    if valid_dir is not None:
        raise DataError(f"{root}: has a '{valid_dir.name}' folder but no 'train' folder; add {root}/train/<class>/")
    class_dirs = [d for d in dirs if d.name.lower() not in _TEST_NAMES]
    csvs = sorted(p for p in root.glob("*.csv") if p.is_file() and not p.name.startswith("."))
    if len(class_dirs) <= 1 and len(csvs) == 1:  # labels.csv (+ images/): one class folder is no dataset
        return _discover_csv(csvs[0], None, opts)
    return _class_folder_layout(root, dirs, opts)


# --------------------------------------------------------------- CSV layout


@dataclass
class _Row:
    line: int
    path: Path
    key: str  # normalised path string: compares rows with each other and with files on disk
    label: str
    split: str | None  # "train" | "valid" | "test" | None (not given)


def _columns(header: list[str]) -> Columns:
    """Column indices (path, label, split) from a header row."""
    names = [h.strip().lower() for h in header]
    path = next((i for i, n in enumerate(names) if n in _PATH_HEADERS), 0)
    label = next((i for i, n in enumerate(names) if n in _LABEL_HEADERS and i != path), 1)
    split = next((i for i, n in enumerate(names) if n in _SPLIT_HEADERS), None)
    return path, label, split


def _is_header(row: list[str]) -> bool:
    cells = [c.strip().lower() for c in row]
    return cells[0] in _PATH_HEADERS or (len(cells) > 1 and cells[1] in _LABEL_HEADERS)


def _delimiter(csv_path: Path) -> str:
    with open(csv_path, encoding="utf-8-sig") as f:
        first = next((line for line in f if line.strip()), "")
    return "\t" if "\t" in first and "," not in first else ","


def _malformed(csv_path: Path, line: int, cells: list[str]) -> DataError:
    return DataError(
        f"{csv_path} line {line}: expected 'path,label[,is_valid]', got {','.join(cells)!r}; fix or remove the line"
    )


def _parse_split(csv_path: Path, line: int, value: str) -> str:
    key = value.strip().lower()
    if key not in _SPLIT_VALUES:
        raise DataError(
            f"{csv_path} line {line}: split value {value!r} is not one of 1/0, true/false, "
            f"train/valid/test; fix the line"
        )
    return _SPLIT_VALUES[key]


Columns = tuple[int, int, int | None]  # indices of the path, label and split columns


def _parse_row(csv_path: Path, line: int, cells: list[str], cols: Columns | None, root: Path) -> _Row:
    """One data line -> _Row; `cols` comes from the header, None means positional path,label[,is_valid]."""
    if cols is None:
        if len(cells) not in (2, 3):
            raise _malformed(csv_path, line, cells)
        cols = (0, 1, 2 if len(cells) == 3 else None)
    path_col, label_col, split_col = cols
    if len(cells) <= max(path_col, label_col, split_col or 0) or not cells[path_col].strip():
        raise _malformed(csv_path, line, cells)
    split = _parse_split(csv_path, line, cells[split_col]) if split_col is not None else None
    label = cells[label_col].strip()
    if not label and split != "test":
        name = cells[path_col].strip()
        raise DataError(f"{csv_path} line {line}: empty label for {name}; label it or remove the line")
    full = os.path.join(root, cells[path_col].strip())  # an absolute path stays as it is
    return _Row(line, Path(full), os.path.normpath(full), label, split)


def _read_rows(csv_path: Path, root: Path) -> list[_Row]:
    """Parse every non-blank line; the first one is a header when it names its columns."""
    rows: list[_Row] = []
    cols, first = None, True
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=_delimiter(csv_path))
            for cells in reader:
                if not any(c.strip() for c in cells):
                    continue
                if first and _is_header(cells):
                    cols, first = _columns(cells), False
                    continue
                first = False
                rows.append(_parse_row(csv_path, reader.line_num, cells, cols, root))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path}: not a readable UTF-8 CSV file ({exc}); save it as CSV (UTF-8)") from None
    return rows


def _missing_rows(csv_path: Path, rows: list[_Row], root: Path, on_disk: set[str]) -> tuple[list[_Row], list[str]]:
    """Drop listed files that do not exist, one message each for errors.txt.

    A few missing files are skipped like unreadable ones; when most are
    missing the paths point somewhere else, which is an error naming the root.
    """
    missing = [r for r in rows if r.key not in on_disk and not os.path.isfile(r.key)]
    if not missing:
        return rows, []
    if len(missing) * 2 > len(rows):
        first = missing[0]
        raise DataError(
            f"{csv_path} line {first.line}: file {first.path} not found ({len(missing)} of {len(rows)} listed "
            f"files are missing); fix the paths, which are relative to {root} (--image-root FOLDER changes that)"
        )
    gone = {id(r) for r in missing}
    messages = [f"{r.path}: not found ({csv_path.name} line {r.line}); skipped" for r in missing]
    return [r for r in rows if id(r) not in gone], messages


def _dedupe(csv_path: Path, rows: list[_Row]) -> tuple[list[_Row], list[str]]:
    """Keep the first line for each path; a path listed again is a warning."""
    kept: dict[str, _Row] = {}
    dupes = []
    for r in rows:
        if r.key in kept:
            dupes.append(r)
        else:
            kept[r.key] = r
    if not dupes:
        return rows, []
    first = dupes[0]
    note = (
        f"{len(dupes)} path(s) listed more than once in {csv_path.name} (first line kept), "
        f"e.g. line {first.line}: {first.path}"
    )
    return list(kept.values()), [note]


def _unlabelled(csv_path: Path, rows: list[_Row], images: list[str], root: Path) -> list[str]:
    """A warning for images under the root that the CSV does not mention (normalised paths)."""
    listed = {r.key for r in rows}
    extra = [p for p in images if p not in listed]
    if not extra:
        return []
    return [
        f"{len(extra)} image(s) under {root} are not in {csv_path.name} (files without labels) "
        f"and are not used: {_examples(extra)}"
    ]


def _discover_csv(csv_path: Path, image_root: Path | None, opts: _Options) -> DataSplits:
    root = Path(image_root) if image_root is not None else csv_path.parent
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found; pass the folder the CSV's paths start from with --image-root")
    images = [os.path.normpath(p) for p in scan_files(root)[0]]
    rows = _read_rows(csv_path, root)
    if not rows:
        raise DataError(f"{csv_path}: lists no images; add lines of path,label")
    rows, missing = _missing_rows(csv_path, rows, root, set(images))
    rows, notes = _dedupe(csv_path, rows)
    if missing:
        notes.append(f"{len(missing)} file(s) listed in {csv_path.name} not found and skipped, "
                     f"e.g. {missing[0]}")
    notes += _unlabelled(csv_path, rows, images, root)
    labelled = [r for r in rows if r.split != "test"]
    tokens = [r.label.split() for r in labelled]
    multilabel = any(len(t) > 1 for t in tokens)
    classes = sorted({name for t in tokens for name in t})
    index = {name: i for i, name in enumerate(classes)}
    samples = [
        (r.path, tuple(sorted({index[n] for n in t})) if multilabel else index[t[0]])
        for r, t in zip(labelled, tokens)
    ]
    test = [r.path for r in rows if r.split == "test"]
    if any(r.split is not None for r in rows):
        train = [s for s, r in zip(samples, labelled) if r.split == "train"]
        valid = [s for s, r in zip(samples, labelled) if r.split == "valid"]
        if not valid:
            raise DataError(
                f"{csv_path}: no line is marked valid in the split column; mark some valid or drop the column"
            )
        notes += _split_class_notes(classes, train, valid)
        layout = "csv, given split"
    else:
        train, valid = split_stratified(samples, opts.valid_pct, opts.seed)
        layout = "csv, split"
    splits = _finish(layout, csv_path, root, classes, train, valid, test, multilabel, notes, opts)
    splits.skipped = missing
    return splits


def _split_class_notes(classes: list[str], train: list[Sample], valid: list[Sample]) -> list[str]:
    in_train = {classes[c] for _, label in train for c in _indices(label)}
    in_valid = {classes[c] for _, label in valid for c in _indices(label)}
    if in_train == in_valid:
        return []
    diff = _class_difference(in_train, in_valid)
    return [f"train and valid hold different classes ({diff}); those classes cannot be learned or measured"]


# -------------------------------------------------------------------- entry


def discover(
    source: str | Path,
    valid_pct: float = 0.2,
    seed: int = 0,
    image_root: str | Path | None = None,
    min_per_class_warn: int = 10,
    min_classes: int = 2,
) -> DataSplits:
    """Find the images, classes and train/valid/test split of a dataset folder or CSV file.

    Args:
        source: a folder in layout (a) or (b), or a CSV label file (c); a
            folder holding only one CSV file and images is read as (c).
        valid_pct: share of each class held out for validation when the
            data do not say (layouts (b), (c) without a split column, or
            (a) without a valid folder); 0 keeps every such image in train
            and `valid` empty (to score a finished model on a folder).
        seed: seeds the split; same files and seed give the same split.
        image_root: folder the CSV's relative paths start from (default: the
            CSV's folder).
        min_per_class_warn: classes with fewer images get a warning.
        min_classes: fewer classes than this is an error (2 for training;
            1 to score a model on a folder that holds a single class).

    Raises:
        DataError: a missing path, no images, one class, an empty class
            folder, train/valid class folders that differ, a CSV line that is
            malformed or has an empty label, a CSV most of whose files are
            missing (a few missing files are skipped and listed in `skipped`).
    """
    opts = _Options(valid_pct, seed, min_per_class_warn, min_classes)
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: not found; pass a dataset folder or a CSV file of path,label")
    if source.is_dir():
        return _discover_folder(source, opts)
    if is_image_file(source):
        raise DataError(f"{source}: is a single image; pass the folder of class folders (DATA/<class>/*.jpg)")
    if source.suffix.lower() not in (".csv", ".tsv", ".txt"):
        raise DataError(f"{source}: expected a dataset folder or a .csv file of path,label")
    root = Path(image_root) if image_root is not None else None
    return _discover_csv(source, root, opts)
