"""1-D signals in the UCR archive's text format: read, check, z-normalise, split.

The UCR Time Series Classification Archive stores one series per line: the
class label first, then the values. The 2018 release separates fields with
tabs (`.tsv`), older copies with commas or runs of spaces; `read_series`
detects which from the first line that holds data and uses it for the whole
file.

Labels are kept as they are spelt in the file ("1", "2" or "-1", "1"): they are
the class names of a run, ordered numerically when every label is a number
(so -1 comes before 1 and 2 before 10), otherwise alphabetically.

Variable-length series. The archive pads short series with NaN at the end
(and some copies simply end the line early, or leave empty trailing fields).
Missing values at the end of a line are trimmed, so each series keeps its own
length (`SeriesSet.lengths`); `to_array` then z-normalises every series over
its real values and pads the short ones with zeros, which after z-normalisation
is each series' own mean, so a padded tail adds no signal. A missing value in
the middle of a series is refused (fill or interpolate it first), because
guessing it would change the data silently.

Every problem a user can cause is a `DataError` naming the file and line: an
empty file, a label with no values, a value that is not a number, fewer than
two classes where a classifier needs them.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from heron.data.folders import valid_count
from heron.errors import DataError

__all__ = ["SeriesSet", "read_series", "detect_delimiter", "znormalise", "pad_series",
           "split_series", "sort_labels"]

_MISSING = {"", "nan", "na", "?", "null"}  # spellings of a missing value (case-insensitive)


@dataclass
class SeriesSet:
    """Series read from one file: `series[i]` (1-D float64, trimmed), `labels[i]` as spelt, line numbers."""

    path: Path
    series: list[np.ndarray]
    labels: list[str] | None  # None when the file holds values only
    line_numbers: list[int]

    def __len__(self) -> int:
        return len(self.series)

    @property
    def lengths(self) -> np.ndarray:
        """Int64[N]: the number of real values in each series."""
        return np.array([len(s) for s in self.series], dtype=np.int64)

    @property
    def classes(self) -> list[str]:
        """The distinct labels, ordered by `sort_labels`."""
        if self.labels is None:
            raise DataError(f"{self.path}: holds no labels (read with labelled=False)")
        return sort_labels(set(self.labels))

    def require_classes(self, minimum: int = 2) -> list[str]:
        """`classes`, or a DataError when there are fewer than `minimum` of them."""
        classes = self.classes
        if len(classes) < minimum:
            found = ", ".join(repr(c) for c in classes)
            raise DataError(f"{self.path}: has {len(classes)} class ({found}) in {len(self)} series, line 1 onwards; "
                            f"a classifier needs at least {minimum}: is the label the first field of every line?")
        return classes

    def targets(self, classes: list[str]) -> np.ndarray:
        """Int64[N]: each label's index in `classes`; an unknown label is a DataError naming its line."""
        index = {c: i for i, c in enumerate(classes)}
        out = np.empty(len(self), dtype=np.int64)
        for i, (label, line) in enumerate(zip(self.labels or [], self.line_numbers)):
            if label not in index:
                raise DataError(f"{self.path}, line {line}: label {label!r} is not one of the trained classes "
                                f"({', '.join(classes)}); is this file from the same data set?")
            out[i] = index[label]
        return out

    def to_array(self, length: int | None = None) -> np.ndarray:
        """Float32[N, T]: z-normalised series, zero-padded (or cut) to `length` (default: the longest)."""
        return pad_series([znormalise(s) for s in self.series], length)

    def counts(self) -> dict[str, int]:
        """Series per class, in class order."""
        counted = Counter(self.labels or [])
        return {c: counted[c] for c in self.classes}


def sort_labels(labels) -> list[str]:
    """Labels in numeric order when every one is a number, else alphabetical."""
    labels = list(labels)
    try:
        return sorted(labels, key=lambda s: (float(s), s))
    except ValueError:
        return sorted(labels)


def detect_delimiter(line: str) -> str | None:
    """"\\t" or "," when the line holds one, else None (runs of whitespace)."""
    if "\t" in line:
        return "\t"
    if "," in line:
        return ","
    return None


def _fields(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    return [f.strip() for f in line.split(delimiter)]


def _parse_values(fields: list[str], path: Path, line_no: int, first_column: int) -> np.ndarray:
    """The values of one line as float64, trailing missing values trimmed; bad fields name their column."""
    end = len(fields)
    while end > 0 and fields[end - 1].lower() in _MISSING:
        end -= 1
    values = np.empty(end, dtype=np.float64)
    for j, text in enumerate(fields[:end]):
        column = first_column + j
        if text.lower() in _MISSING:
            raise DataError(f"{path}, line {line_no}, column {column}: missing value ({text or 'empty'!r}) inside "
                            "the series; only missing values at the end are trimmed: fill or interpolate it first")
        try:
            value = float(text)
        except ValueError:
            raise DataError(f"{path}, line {line_no}, column {column}: {text[:40]!r} is not a number; each line "
                            "must be a label then numeric values separated by tabs, commas or spaces") from None
        if not math.isfinite(value):
            raise DataError(f"{path}, line {line_no}, column {column}: {text!r} is not a finite number")
        values[j] = value
    return values


def read_series(path: str | Path, labelled: bool = True) -> SeriesSet:
    """Read a UCR-format file: per line a label (when `labelled`) then values, tab/comma/space separated.

    Blank lines are skipped; the separator is detected on the first line with
    data. Raises DataError (file and line) for a missing or empty file, a line
    with no values, a non-numeric value and a missing value inside a series.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; give a UCR-format text file (label, then values, per line)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not a text file ({err.reason} at byte {err.start}); "
                        "give a UCR-format text file (label, then values, per line)") from None
    series, labels, line_numbers = [], [], []
    delimiter: str | None = None
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if not series:
            delimiter = detect_delimiter(line)
        fields = _fields(line, delimiter)
        if labelled:
            label, fields = _label(fields, path, line_no), fields[1:]
            labels.append(label)
        values = _parse_values(fields, path, line_no, first_column=2 if labelled else 1)
        if len(values) == 0:
            raise DataError(f"{path}, line {line_no}: {'a label and ' if labelled else ''}no values; "
                            "each line must hold one whole series")
        series.append(values)
        line_numbers.append(line_no)
    if not series:
        raise DataError(f"{path}, line 1: the file is empty (no series); each line must be a label then values")
    return SeriesSet(path, series, labels if labelled else None, line_numbers)


def _label(fields: list[str], path: Path, line_no: int) -> str:
    label = fields[0].strip() if fields else ""
    if not label or label.lower() in _MISSING:
        raise DataError(f"{path}, line {line_no}: the first field (the class label) is empty or missing")
    return label


def znormalise(series: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """(x - mean) / std over the last axis (population std); a constant series becomes zeros, not NaN."""
    x = np.asarray(series, dtype=np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    return (x - mean) / np.where(std > eps, std, 1.0)


def pad_series(series: list[np.ndarray], length: int | None = None) -> np.ndarray:
    """Float32[N, T]: each 1-D series zero-padded at the end (or cut) to `length` (default: the longest)."""
    length = max(len(s) for s in series) if length is None else int(length)
    out = np.zeros((len(series), length), dtype=np.float32)
    for i, s in enumerate(series):
        n = min(len(s), length)
        out[i, :n] = s[:n]
    return out


def split_series(targets: np.ndarray, valid_pct: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) index arrays, `valid_pct` of every class held out (`folders.valid_count` rounding).

    Each class is shuffled by its own generator seeded by (`seed`, class), so
    the split depends only on the seed and the labels. Indices come back sorted.
    """
    if not 0.0 <= valid_pct < 1.0:
        raise DataError(f"valid_pct must be at least 0 and below 1 (got {valid_pct}); e.g. 0.2 holds out 20%")
    train, valid = [], []
    for cls in np.unique(targets):
        members = np.flatnonzero(targets == cls)
        np.random.default_rng([seed, int(cls)]).shuffle(members)
        k = valid_count(len(members), valid_pct)
        valid.append(members[:k])
        train.append(members[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(valid))
