"""Does anything but the picture predict the label? Metadata signals and cross-split duplicates.

A classifier that scores well may be reading the file rather than the photo:
one class shot with one camera, saved at one size, or copied into both splits.
`find_leakage` scans a dataset's files (`heron.data.metadata`), fits one small
model per metadata feature on train, scores it on valid, and sets each score
beside chance and beside the image model's accuracy.

Models: a categorical feature (size WxH, format, mode, dpi, header blocks,
camera) predicts, for each value, its most common train class; a numeric one
(width, height, aspect ratio, file size, bytes per pixel, JPEG quality,
timestamp, mean colour) is a depth-4
decision tree; `all_metadata` is a depth-6 tree on every header feature
together (mean colour, which is image content, left out).

Chance is the share of the most common class in valid: no predictor that
ignores the image can expect more (sum_c q_c p_c <= max_c p_c for any
prediction rates q), so it is the strictest constant baseline. Each feature's
valid accuracy gets a one-sided binomial test against it (k correct of n, at
rate chance), and p-values are Bonferroni-corrected over the features tested.

Grades (`grade_signal`, `grade_duplicates`), chosen so that the weak but real
signal many real datasets carry (a camera, a resolution) reads as weak:

- none: corrected p >= ALPHA (0.01).
- strong: significant, and the metadata alone removes at least 3/4 of
  chance's errors (gain >= 0.75 * (1 - chance): 87.5% on a 50/50 set), or it
  rivals the image model (within 5 points of it) while removing at least 1/4
  of chance's errors (so a poor image model does not make a 60% camera
  signal on a 50/50 set strong). Without an image model only the first rule
  applies.
- weak: significant but not strong.
- duplicates: strong when at least 1% of the valid images (and at least 2)
  have an identical file or a near-duplicate (perceptual hashes within
  NEAR_DUPLICATE_BITS bits) of the same class in train; weak for fewer; none
  for none.

The verdict is the highest grade of any signal. `write_leakage` writes
`leakage.json` and `leakage.html` (the run report's style); `summary` is the
terminal text, ending in `verdict: none|weak|strong`.
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from heron._atomic import atomic_write_json, atomic_write_text
from heron.data.folders import DataSplits
from heron.data.metadata import CATEGORICAL_FIELDS as _CATEGORICAL, NUMERIC_FIELDS as _NUMERIC, FileMeta, scan_metadata
from heron.errors import DataError
from heron.interpret.report import REPORT_CSS, errors_html, esc, summary_html, table_html

__all__ = ["ALPHA", "NEAR_DUPLICATE_BITS", "Signal", "Concentration", "Duplicate", "Leakage",
           "binomial_pvalue", "check_splits", "concentrations", "grade_signal", "grade_duplicates", "near_duplicates", "find_leakage",
           "analyse", "summary", "write_leakage"]

ALPHA = 0.01  # family-wise error rate over the features tested (Bonferroni)
STRONG_SHARE_OF_ERRORS = 0.75  # metadata alone removes this share of chance's errors: strong
RIVAL_POINTS = 0.05  # within this of the image model's accuracy: rivals it ...
RIVAL_MIN_SHARE = 0.25  # ... when it also removes at least this share of chance's errors
DUPLICATE_STRONG_SHARE = 0.01  # valid images with a same-class copy in train
NEAR_DUPLICATE_BITS = 6  # resized / re-encoded photos differ in <= 6 of 64 bits; distinct ones in >= 14 here
_MIN_GROUP = 5  # per-class tables look at values held by at least this many images
_TOP_VALUES = 8  # rows per feature in the per-class tables
_THUMBNAILS = 12  # duplicate pairs shown as pictures in the HTML
GRADES = ("none", "weak", "strong")

_ORDER = ("width", "height", "size", "aspect_ratio", "file_size", "bytes_per_pixel", "format", "mode",
          "jpeg_quality", "dpi", "header_blocks", "camera", "timestamp", "mean_colour", "all_metadata")


# ------------------------------------------------------------------ results


@dataclass
class Signal:
    """One feature's small model scored on valid: accuracy, test against chance, grade."""

    feature: str
    kind: str  # categorical | numeric | group
    accuracy: float | None  # None: not tested (the feature has one value in train)
    correct: int
    images: int
    chance: float
    p_value: float
    p_adjusted: float  # Bonferroni over the features tested
    grade: str  # none | weak | strong | n/a
    values: int  # distinct values in train


@dataclass
class Concentration:
    """A value of a categorical feature held mostly by one class (a per-class table row)."""

    feature: str
    value: str
    images: int
    label: str
    share: float
    base_rate: float
    p_value: float
    finding: str


@dataclass
class Duplicate:
    """A valid image with an identical file or a near-duplicate in train."""

    valid: str
    train: str
    valid_class: str
    train_class: str
    bits: int | None  # perceptual-hash distance; None when only the bytes were compared
    identical: bool

    @property
    def same_label(self) -> bool:
        return self.valid_class == self.train_class


@dataclass
class Leakage:
    """The whole leakage check: what `summary`, `leakage.json` and `leakage.html` show."""

    source: str
    classes: list[str]
    train_images: int
    valid_images: int
    chance: float
    chance_class: str
    image_accuracy: float | None
    image_source: str
    signals: list[Signal]
    concentrations: list[Concentration]
    duplicates: list[Duplicate]
    duplicate_grade: str
    tests: int
    verdict: str
    reasons: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # header unreadable: left out
    undecodable: list[str] = field(default_factory=list)  # header read, pixels not: no colour or hash
    pixels: bool = True

    def to_dict(self) -> dict:
        data = asdict(self)
        data["thresholds"] = {"alpha": ALPHA, "strong_share_of_errors": STRONG_SHARE_OF_ERRORS,
                              "rival_points": RIVAL_POINTS, "rival_min_share": RIVAL_MIN_SHARE,
                              "duplicate_strong_share": DUPLICATE_STRONG_SHARE,
                              "near_duplicate_bits": NEAR_DUPLICATE_BITS}
        return data


# --------------------------------------------------------------- statistics


def binomial_pvalue(correct: int, total: int, rate: float) -> float:
    """One-sided P(X >= correct) for X ~ Binomial(total, rate): is `correct` of `total` better than `rate`?"""
    from scipy.stats import binom

    if total == 0:
        return 1.0
    return float(min(1.0, binom.sf(correct - 1, total, rate)))


def _chance(labels: np.ndarray, num_classes: int) -> tuple[float, int]:
    """(share of the most common class, that class) among `labels`."""
    counts = np.bincount(labels, minlength=num_classes)
    best = int(counts.argmax())
    return float(counts[best] / max(1, len(labels))), best


def grade_signal(accuracy: float, chance: float, p_adjusted: float, image_accuracy: float | None) -> str:
    """none | weak | strong for one feature (the rules are in the module docstring)."""
    if p_adjusted >= ALPHA:
        return "none"
    headroom, gain = 1.0 - chance, accuracy - chance
    if gain >= STRONG_SHARE_OF_ERRORS * headroom:
        return "strong"
    if image_accuracy is not None and accuracy >= image_accuracy - RIVAL_POINTS and gain >= RIVAL_MIN_SHARE * headroom:
        return "strong"
    return "weak"


def grade_duplicates(same_label: int, valid_images: int) -> str:
    """none | weak | strong for the valid images with a same-class copy in train."""
    if same_label == 0:
        return "none"
    strong = same_label >= 2 and same_label >= DUPLICATE_STRONG_SHARE * valid_images
    return "strong" if strong else "weak"


# ------------------------------------------------------------------ features


def _numeric_column(metas: Sequence[FileMeta], get: Callable[[FileMeta], float]) -> np.ndarray:
    return np.array([get(m) for m in metas], dtype=np.float64).reshape(-1, 1)  # (n, 1)


def _colour_column(metas: Sequence[FileMeta]) -> np.ndarray:
    nan3 = (math.nan,) * 3
    return np.array([m.mean_rgb or nan3 for m in metas], dtype=np.float64)  # (n, 3)


def _features(metas: Sequence[FileMeta], pixels: bool) -> dict[str, tuple[str, np.ndarray]]:
    """name -> (kind, column): float (n, d) for numeric features, str (n,) for categorical ones."""
    table = {name: ("numeric", _numeric_column(metas, get)) for name, get in _NUMERIC.items()}
    table.update({name: ("categorical", np.array([get(m) for m in metas], dtype=object))
                  for name, get in _CATEGORICAL.items()})
    if pixels:
        table["mean_colour"] = ("numeric", _colour_column(metas))
    return {name: table[name] for name in _ORDER if name in table}


def _distinct(kind: str, column: np.ndarray) -> int:
    if kind == "categorical":
        return len(set(column.tolist()))
    rows = {tuple(np.nan_to_num(r, nan=-1.0)) for r in column}
    return len(rows)


# -------------------------------------------------------------------- models


def _lookup_predict(x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, fallback: int) -> np.ndarray:
    """Each value's most common train class (ties: the lower index); unseen values get `fallback`."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for value, label in zip(x_train.tolist(), y_train.tolist()):
        counts[value][label] += 1
    table = {v: max(c.items(), key=lambda t: (t[1], -t[0]))[0] for v, c in counts.items()}
    return np.array([table.get(v, fallback) for v in x_valid.tolist()], dtype=np.int64)


def _leaf(n: int) -> int:
    """Smallest leaf of the trees: 3 images, or 0.5% of train on large sets (fewer, steadier splits)."""
    return max(3, n // 200)


def _tree_predict(x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, depth: int, seed: int) -> np.ndarray:
    """A decision tree fit on train, predicting valid (missing values, NaN, go to their own side)."""
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier(max_depth=depth, min_samples_leaf=_leaf(len(y_train)), random_state=seed)
    return tree.fit(x_train, y_train).predict(x_valid)


def _all_metadata(train: dict, valid: dict) -> tuple[np.ndarray, np.ndarray]:
    """Every header feature as one matrix: numeric columns + one-hot of frequent categorical values."""
    from sklearn.preprocessing import OneHotEncoder

    names = [n for n in train if n != "mean_colour"]
    numeric = [n for n in names if train[n][0] == "numeric"]
    categorical = [n for n in names if train[n][0] == "categorical"]
    x_train = [train[n][1] for n in numeric]
    x_valid = [valid[n][1] for n in numeric]
    if categorical:
        cat_train = np.stack([train[n][1] for n in categorical], axis=1)  # (n, k)
        cat_valid = np.stack([valid[n][1] for n in categorical], axis=1)
        onehot = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=3, max_categories=32,
                               sparse_output=False).fit(cat_train)
        x_train.append(onehot.transform(cat_train))
        x_valid.append(onehot.transform(cat_valid))
    return np.hstack(x_train), np.hstack(x_valid)


def _predictions(train: dict, valid: dict, y_train: np.ndarray, seed: int) -> dict[str, tuple[str, np.ndarray | None, int]]:
    """name -> (kind, valid predictions, distinct train values); predictions None for a feature with one
    value in train (nothing to learn)."""
    fallback = int(np.bincount(y_train).argmax())
    out: dict[str, tuple[str, np.ndarray | None, int]] = {}
    for name, (kind, column) in train.items():
        values = _distinct(kind, column)
        if values < 2:
            out[name] = (kind, None, values)
        elif kind == "categorical":
            out[name] = (kind, _lookup_predict(column, y_train, valid[name][1], fallback), values)
        else:
            out[name] = (kind, _tree_predict(column, y_train, valid[name][1], 4, seed), values)
    tested = [n for n, (_, p, _) in out.items() if p is not None and n != "mean_colour"]
    if len(tested) > 1:
        x_train, x_valid = _all_metadata(train, valid)
        out["all_metadata"] = ("group", _tree_predict(x_train, y_train, x_valid, 6, seed), 0)
    return out


def _signals(train: dict, valid: dict, y_train: np.ndarray, y_valid: np.ndarray, chance: float,
             image_accuracy: float | None, seed: int) -> list[Signal]:
    """Every feature scored on valid, tested against chance (Bonferroni over those tested), graded."""
    predictions = _predictions(train, valid, y_train, seed)
    tests = sum(p is not None for _, p, _ in predictions.values())
    signals = []
    for name, (kind, pred, values) in predictions.items():
        if pred is None:
            signals.append(Signal(name, kind, None, 0, len(y_valid), chance, 1.0, 1.0, "n/a", values))
            continue
        correct = int((pred == y_valid).sum())
        accuracy = correct / len(y_valid)
        p = binomial_pvalue(correct, len(y_valid), chance)
        p_adj = min(1.0, p * tests)
        grade = grade_signal(accuracy, chance, p_adj, image_accuracy)
        signals.append(Signal(name, kind, accuracy, correct, len(y_valid), chance, p, p_adj, grade, values))
    return signals


# ------------------------------------------------------------ per-class tables


def _finding(feature: str, value: str, images: int, label: str, share: float, base: float) -> str:
    if share == 1.0:
        return f"all {images} images with {feature} {value} are class {label}"
    return f"{share:.0%} of the {images} images with {feature} {value} are class {label} ({base:.0%} of all images)"


def concentrations(feature: str, column: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> list[Concentration]:
    """Values of one categorical feature held by one class far beyond its base rate (all splits).

    Values with at least 5 images are tested (binomial, the class's share of
    all images as the rate; Bonferroni over the values tested); the most
    significant 8 are kept.
    """
    base = np.bincount(labels, minlength=len(classes)) / max(1, len(labels))
    groups: dict[str, Counter] = defaultdict(Counter)
    for value, label in zip(column.tolist(), labels.tolist()):
        groups[value][label] += 1
    tested = {v: c for v, c in groups.items() if sum(c.values()) >= _MIN_GROUP}
    rows = []
    for value, counts in tested.items():
        label, k = max(counts.items(), key=lambda t: (t[1], -t[0]))
        n = sum(counts.values())
        p = binomial_pvalue(k, n, float(base[label]))
        if p * len(tested) < ALPHA and k / n > base[label]:
            share = k / n
            rows.append(Concentration(feature, value, n, classes[label], share, float(base[label]), p,
                                      _finding(feature, value, n, classes[label], share, float(base[label]))))
    rows.sort(key=lambda r: (r.p_value, -r.images))
    return rows[:_TOP_VALUES]


# ---------------------------------------------------------------- duplicates


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64."""
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


class _BandIndex:
    """Hashes split into 4 bands of 16 bits; a query probes each band's value and its 16 one-bit neighbours.

    Two hashes within 7 bits of each other agree to within one bit in at
    least one band (pigeonhole), so every pair within 7 bits is found, while
    a query only compares with the few hashes that share a band.
    """

    def __init__(self, hashes: np.ndarray) -> None:
        self.hashes = hashes  # uint64 (n,), unique
        self.bands: list[dict[int, list[int]]] = [defaultdict(list) for _ in range(4)]
        for i, h in enumerate(hashes.tolist()):
            for b, band in enumerate(self.bands):
                band[(h >> (16 * b)) & 0xFFFF].append(i)

    def nearest(self, h: int, max_bits: int) -> tuple[int, int] | None:
        """(index, bits) of the closest hash within `max_bits` (<= 7) of `h`, None if there is none."""
        found: set[int] = set()
        for b, band in enumerate(self.bands):
            key = (h >> (16 * b)) & 0xFFFF
            for probe in (key, *(key ^ (1 << j) for j in range(16))):
                found.update(band.get(probe, ()))
        if not found:
            return None
        candidates = np.fromiter(found, dtype=np.int64)
        bits = _popcount(self.hashes[candidates] ^ np.uint64(h))
        best = int(bits.argmin())
        return (int(candidates[best]), int(bits[best])) if bits[best] <= max_bits else None


def near_duplicates(train_hashes: Sequence[int | None], valid_hashes: Sequence[int | None],
                    max_bits: int = NEAR_DUPLICATE_BITS) -> dict[int, tuple[int, int]]:
    """valid index -> (train index, bits) of its closest train hash within `max_bits` (None hashes skipped).

    Identical train hashes are indexed once (their first file stands for all),
    so a thousand blank images cost one comparison, not a million.
    """
    if not 0 <= max_bits <= 7:
        raise ValueError(f"max_bits must be 0..7 (the band index finds every pair within 7 bits), got {max_bits}")
    known = [(h, i) for i, h in enumerate(train_hashes) if h is not None]
    if not known:
        return {}
    unique, first = np.unique(np.array([h for h, _ in known], dtype=np.uint64), return_index=True)
    owner = [known[f][1] for f in first.tolist()]
    index = _BandIndex(unique)
    matches = {}
    for j, h in enumerate(valid_hashes):
        hit = index.nearest(h, max_bits) if h is not None else None
        if hit is not None:
            matches[j] = (owner[hit[0]], hit[1])
    return matches


def _duplicates(train: Sequence[tuple[FileMeta, int]], valid: Sequence[tuple[FileMeta, int]],
                classes: Sequence[str]) -> list[Duplicate]:
    """One entry per valid image with an identical file (same bytes) or a near-duplicate in train."""
    by_digest = {}
    for i, (m, _) in enumerate(train):
        if m.digest is not None:
            by_digest.setdefault(m.digest, i)
    near = near_duplicates([m.phash for m, _ in train], [m.phash for m, _ in valid])  # the bits reports state
    found = []
    for j, (m, label) in enumerate(valid):
        same = by_digest.get(m.digest) if m.digest is not None else None
        if same is not None:
            i, bits = same, (0 if m.phash is not None else None)
        elif j in near:
            i, bits = near[j]
        else:
            continue
        t, t_label = train[i]
        found.append(Duplicate(m.path, t.path, classes[label], classes[t_label], bits, same is not None))
    return found


# ------------------------------------------------------------------ analysis


def _signal_reason(grade: str, named: list[Signal], chance: float, image_accuracy: float | None) -> str:
    """One sentence for the features of one grade."""
    parts = ", ".join(f"{s.feature} {s.accuracy:.1%}" for s in named)
    image = f"{image_accuracy:.1%}" if image_accuracy is not None else None
    if grade == "strong":
        return (f"strong: metadata alone predicts the label: {parts} on valid (chance {chance:.1%}"
                + (f", image model {image})" if image else ")")
                + "; the image model may be reading these rather than the picture")
    below = image_accuracy is not None and all(s.accuracy < image_accuracy - RIVAL_POINTS for s in named)
    return (f"weak: {parts} beat chance ({chance:.1%}) significantly"
            + (f" but stay well below the image model ({image})" if below else
               f" (image model {image})" if image else "")
            + "; a real but small signal, common in real datasets (one source, one camera or size)")


def _duplicate_reason(duplicates: list[Duplicate], grade: str, valid_images: int) -> str:
    same = sum(d.same_label for d in duplicates)
    identical = sum(d.identical for d in duplicates)
    return (f"{grade if grade != 'none' else 'note'}: {same} of {valid_images} valid images ({same / valid_images:.1%}) "
            f"have a same-class copy in train ({identical} identical files, {len(duplicates) - identical} "
            f"near-duplicates; {len(duplicates) - same} of them with another label)")


def _reasons(signals: list[Signal], duplicates: list[Duplicate], dup_grade: str, chance: float,
             image_accuracy: float | None, valid_images: int, tests: int) -> list[str]:
    """Plain sentences behind the verdict, the strongest first."""
    graded = [(grade, _signal_reason(grade, named, chance, image_accuracy)) for grade in ("strong", "weak")
              if (named := [s for s in signals if s.grade == grade])]
    if duplicates:
        graded.append((dup_grade, _duplicate_reason(duplicates, dup_grade, valid_images)))
    graded.sort(key=lambda t: -GRADES.index(t[0]))
    lines = [text for _, text in graded]
    if not any(grade != "none" for grade, _ in graded):
        lines.insert(0, f"none: no feature beats chance ({chance:.1%}) after Bonferroni correction over {tests} "
                     f"tests (alpha {ALPHA}), and no valid image has a same-class copy in train")
    if image_accuracy is None:
        lines.append("no image model to compare with: 'strong' means metadata alone removes "
                     f"{STRONG_SHARE_OF_ERRORS:.0%} of chance's errors")
    return lines


def _verdict(signals: list[Signal], dup_grade: str) -> str:
    grades = [s.grade for s in signals if s.grade in GRADES] + [dup_grade]
    return max(grades, key=GRADES.index)


def analyse(classes: Sequence[str], train: Sequence[tuple[FileMeta, int]], valid: Sequence[tuple[FileMeta, int]],
            image_accuracy: float | None = None, *, source: str = "", image_source: str = "",
            seed: int = 0) -> Leakage:
    """The leakage check on scanned files: (FileMeta, class index) per image of each split.

    Files whose header could not be read are left out and listed in `skipped`.
    """
    skipped = [m.error for m, _ in (*train, *valid) if m.error]
    undecodable = [m.pixel_error for m, _ in (*train, *valid) if m.pixel_error]
    train = [(m, y) for m, y in train if m.error is None]
    valid = [(m, y) for m, y in valid if m.error is None]
    if not train or not valid:
        raise DataError(f"{source or 'dataset'}: no readable images in {'train' if not train else 'valid'}; "
                        "a leakage check needs labelled images in both splits")
    pixels = any(m.mean_rgb is not None for m, _ in (*train, *valid))
    y_train = np.array([y for _, y in train], dtype=np.int64)
    y_valid = np.array([y for _, y in valid], dtype=np.int64)
    f_train = _features([m for m, _ in train], pixels)
    f_valid = _features([m for m, _ in valid], pixels)
    chance, chance_class = _chance(y_valid, len(classes))
    signals = _signals(f_train, f_valid, y_train, y_valid, chance, image_accuracy, seed)
    labels = np.concatenate([y_train, y_valid])
    tables = [row for name in _CATEGORICAL
              for row in concentrations(name, np.concatenate([f_train[name][1], f_valid[name][1]]), labels, classes)]
    dups = _duplicates(train, valid, classes)
    dup_grade = grade_duplicates(sum(d.same_label for d in dups), len(valid))
    tests = sum(s.grade != "n/a" for s in signals)
    reasons = _reasons(signals, dups, dup_grade, chance, image_accuracy, len(valid), tests)
    return Leakage(source, list(classes), len(train), len(valid), chance, classes[chance_class], image_accuracy,
                   image_source, signals, tables, dups, dup_grade, tests, _verdict(signals, dup_grade), reasons,
                   skipped, undecodable, pixels)


def check_splits(data: DataSplits) -> None:
    """Raise DataError unless `data` is single-label with validation images (what the check needs)."""
    if data.multilabel:
        raise DataError(f"{data.root}: multi-label data; heron leakage checks single-label datasets")
    if not data.valid:
        raise DataError(f"{data.root}: no validation images; use a valid/ folder or --valid-pct above 0")


def find_leakage(data: DataSplits, image_accuracy: float | None = None, *, image_source: str = "",
                 workers: int | None = None, pixels: bool = True,
                 seed: int = 0, progress: bool = False) -> Leakage:
    """Scan a dataset's train and valid files and check them for label leakage (see the module docstring).

    `image_accuracy`: the image model's valid accuracy on the same split (None:
    'strong' is judged against chance alone). `pixels=False` skips the pixel
    pass (no mean colour, duplicates by nothing). `workers`: decoding
    processes for the pixel pass.
    """
    check_splits(data)
    samples = [*data.train, *data.valid]
    metas = scan_metadata([p for p, _ in samples], workers=workers, pixels=pixels, progress=progress)
    pairs = [(m, int(y)) for m, (_, y) in zip(metas, samples)]
    n = len(data.train)
    return analyse(data.classes, pairs[:n], pairs[n:], image_accuracy, source=str(data.root),
                   image_source=image_source, seed=seed)


# ------------------------------------------------------------------ terminal


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _p(value: float) -> str:
    return f"{value:.2g}" if value < 0.01 else f"{value:.2f}"


def summary(report: Leakage, written: Sequence[str | os.PathLike] = ()) -> str:
    """The terminal text: the feature table, duplicates, reasons; the last line `verdict: ...`."""
    image = f"image model {_pct(report.image_accuracy)}" if report.image_accuracy is not None else "no image model"
    lines = [f"leakage: {report.source}: {report.train_images} train, {report.valid_images} valid images, "
             f"{len(report.classes)} classes",
             f"chance {_pct(report.chance)} (always '{report.chance_class}'); {image}"
             + (f" ({report.image_source})" if report.image_source else ""),
             f"{'feature':<16} {'valid acc':>9} {'chance':>7} {'p (Bonf.)':>10}  grade"]
    for s in report.signals:
        if s.grade != "n/a":
            lines.append(f"{s.feature:<16} {_pct(s.accuracy):>9} {_pct(s.chance):>7} {_p(s.p_adjusted):>10}  {s.grade}")
    untested = [s.feature for s in report.signals if s.grade == "n/a"]
    if untested:
        lines.append(f"not tested (one value in train): {', '.join(untested)}")
    for row in report.concentrations[:5]:
        lines.append(f"  {row.finding}")
    identical = sum(d.identical for d in report.duplicates)
    lines.append(f"duplicates: {len(report.duplicates)} valid images with a copy in train ({identical} identical, "
                 f"{len(report.duplicates) - identical} near, hash within {NEAR_DUPLICATE_BITS} bits)"
                 if report.pixels else "duplicates: not searched (no pixel pass)")
    if report.skipped or report.undecodable:
        lines.append(f"unreadable: {len(report.skipped)} files skipped, {len(report.undecodable)} without pixels "
                     "(listed in leakage.json)")
    lines += report.reasons
    lines += [f"wrote {path}" for path in written]
    lines.append(f"verdict: {report.verdict}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- HTML

_EXTRA_CSS = """
.tone-bad { --tone: #b42318; --tone-soft: #fef3f2; }
.pairs { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 12px; }
.pair { border: 1px solid var(--line); border-radius: 8px; padding: 8px; font-size: 12px; color: var(--muted); }
.pair div { display: flex; gap: 6px; justify-content: center; }
.pair img { width: 112px; height: 112px; object-fit: contain; background: var(--soft); border-radius: 4px; }
.pair p { margin: 6px 0 0; overflow-wrap: anywhere; }
"""
_TONES = {"none": "tone-good", "weak": "tone-warn", "strong": "tone-bad"}


def _verdict_html(report: Leakage) -> str:
    items = "".join(f"<li>{esc(r)}</li>" for r in report.reasons)
    return (f'<section id="verdict" class="diagnosis {_TONES[report.verdict]}"><h2>Verdict '
            f'<span class="badge">{esc(report.verdict)}</span></h2><ul>{items}</ul></section>')


def _gap(s: Signal, image_accuracy: float | None) -> str:
    """How far a feature's accuracy is below the image model's, in points."""
    if s.accuracy is None or image_accuracy is None:
        return "-"
    return f"{100 * (s.accuracy - image_accuracy):+.1f} pts"


def _signal_rows(report: Leakage) -> list[dict]:
    signals = sorted(report.signals, key=lambda s: s.grade == "n/a")  # the untested last
    tested = [s.accuracy is not None for s in signals]
    return [{"feature": s.feature, "model input": s.kind, "valid accuracy": s.accuracy, "chance": s.chance,
             "vs image model": _gap(s, report.image_accuracy),
             "correct": f"{s.correct} / {s.images}" if ok else "-", "p-value": _p(s.p_value) if ok else "-",
             "p (Bonferroni)": _p(s.p_adjusted) if ok else "-", "values in train": s.values or None,
             "grade": s.grade} for s, ok in zip(signals, tested)]


def _concentration_html(report: Leakage) -> str:
    if not report.concentrations:
        return ('<p class="ok">No value of size, format, mode, dpi, header blocks or camera is held by one class beyond its share '
                'of the images (binomial test, Bonferroni over the values with at least 5 images).</p>')
    rows = [{"feature": r.feature, "value": r.value, "images": r.images, "class": r.label, "share": r.share,
             "class overall": r.base_rate, "p-value": _p(r.p_value), "finding": r.finding}
            for r in report.concentrations]
    return table_html(rows, bars=True)


def _thumbnail(path: str, side: int = 112) -> str | None:
    """A small JPEG of `path` as a data: URI, None if it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.draft("RGB", (side, side))
            img = img.convert("RGB")
            img.thumbnail((side, side))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=80)
    except (OSError, ValueError, SyntaxError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _pair_html(d: Duplicate) -> str:
    pics = "".join(f'<img src="{esc(uri)}" alt="{esc(Path(p).name)}">' if (uri := _thumbnail(p)) else ""
                   for p in (d.valid, d.train))
    kind = "identical file" if d.identical else f"near-duplicate, {d.bits} bits apart"
    return (f'<div class="pair"><div>{pics}</div><p>valid {esc(d.valid_class)}: {esc(Path(d.valid).name)}<br>'
            f'train {esc(d.train_class)}: {esc(Path(d.train).name)}<br>{esc(kind)}</p></div>')


def _duplicates_html(report: Leakage) -> str:
    if not report.pixels:
        return '<p class="sub">Not searched: the pixel pass was skipped.</p>'
    if not report.duplicates:
        return (f'<p class="ok">No valid image has an identical file or a near-duplicate (perceptual hash within '
                f'{NEAR_DUPLICATE_BITS} of 64 bits) in train.</p>')
    pairs = "".join(_pair_html(d) for d in report.duplicates[:_THUMBNAILS])
    rows = [{"valid file": d.valid, "train file": d.train, "valid class": d.valid_class, "train class": d.train_class,
             "match": "identical file" if d.identical else "near-duplicate", "hash bits apart": d.bits}
            for d in report.duplicates]
    return f'<div class="pairs">{pairs}</div><h3>All pairs</h3>{table_html(rows, index=True)}'


def _html(report: Leakage) -> str:
    """The whole leakage.html page."""
    from heron import __version__

    title = f"Leakage check: {Path(report.source).name or report.source}"
    cards = {"verdict": report.verdict, "train images": report.train_images, "valid images": report.valid_images,
             "classes": len(report.classes), "chance": f"{_pct(report.chance)} ({report.chance_class})",
             "image model": _pct(report.image_accuracy), "features tested": report.tests,
             "duplicates in valid": len(report.duplicates)}
    unreadable = [*report.skipped, *(f"pixels only: {e}" for e in report.undecodable)]
    sections = [("features", "Features: a small model on each, scored on valid", table_html(_signal_rows(report),
                                                                                                bars=True)),
                ("classes", "Values held by one class", _concentration_html(report)),
                ("duplicates", f"Cross-split duplicates ({len(report.duplicates)})", _duplicates_html(report)),
                ("skipped", f"Unreadable files ({len(unreadable)})", errors_html(unreadable))]
    nav = '<a href="#verdict">Verdict</a>' + "".join(f'<a href="#{sid}">{esc(n.split(":")[0])}</a>'
                                                      for sid, n, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{esc(name)}</h2>{content}</section>' for sid, name, content in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{REPORT_CSS}{_EXTRA_CSS}</style>\n</head>\n<body>\n<main>\n"
            f'<header><h1>{esc(title)}</h1><p class="sub">{esc(report.source)}'
            f'{" &middot; image model: " + esc(report.image_source) if report.image_source else ""}</p>'
            f"{summary_html(cards)}</header>\n<nav>{nav}</nav>\n{_verdict_html(report)}{body}\n"
            f"<footer>Written by heron {esc(__version__)}. Chance is the valid share of the most common class; "
            f"p-values are one-sided binomial tests against it, Bonferroni-corrected over {report.tests} "
            f"features (alpha {ALPHA}).</footer>\n</main>\n</body>\n</html>\n")


def write_leakage(report: Leakage, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write `leakage.json` and `leakage.html` into `out_dir` (atomically); return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = atomic_write_json(out / "leakage.json", report.to_dict(), indent=2)
    html_path = atomic_write_text(out / "leakage.html", _html(report))
    return json_path, html_path
