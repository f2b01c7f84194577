"""Labelled text files for the sequence tasks: a `text,label` CSV and a CoNLL-style tagging file.

- `read_labelled_csv(path)`: a CSV with a header row naming (at least) the
  columns `text` and `label`, in any order; fields may be quoted to hold
  commas or line breaks (the csv module's rules). Every row needs a non-empty
  text and label; the file needs `min_rows` rows and at least two classes.
- `read_conll(path)`: one `token<whitespace>tag` per line (the token is the
  first column and the tag the last, so CoNLL-2003's four columns read too),
  a blank line between sentences, `-DOCSTART-` lines skipped.

Every problem is a `DataError` naming the file and the line (the line a
record starts on, for a CSV field spread over several lines) and the fix.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from heron.data.text import read_text
from heron.errors import DataError

__all__ = ["LabelledTexts", "TaggedSentences", "read_labelled_csv", "read_conll"]

TEXT_COLUMN, LABEL_COLUMN = "text", "label"
DOCSTART = "-DOCSTART-"


@dataclass
class LabelledTexts:
    """The rows of a `text,label` CSV, with the line each row starts on."""

    texts: list[str]
    labels: list[str]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def classes(self) -> list[str]:
        """The distinct labels, sorted."""
        return sorted(set(self.labels))


@dataclass
class TaggedSentences:
    """Sentences as token lists with one tag per token, and the line each sentence starts on."""

    tokens: list[list[str]]
    tags: list[list[str]]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def tag_set(self) -> list[str]:
        """The distinct tags, sorted."""
        return sorted({t for sentence in self.tags for t in sentence})


def _header(reader, path: Path) -> tuple[int, int]:
    """Positions of the text and label columns in the header row."""
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: the file is empty") from None
    names = [h.strip().lstrip("\ufeff").lower() for h in header]
    missing = [c for c in (TEXT_COLUMN, LABEL_COLUMN) if c not in names]
    if missing:
        found = ",".join(h.strip() for h in header)[:80]
        raise DataError(f"{path}: line 1: no {' or '.join(repr(m) for m in missing)} column (header is {found!r}); "
                        f"the first row must name the columns, e.g. {TEXT_COLUMN},{LABEL_COLUMN}")
    return names.index(TEXT_COLUMN), names.index(LABEL_COLUMN)


def read_labelled_csv(path: str | Path, min_rows: int = 4, min_classes: int = 2) -> LabelledTexts:
    """The rows of a CSV with `text` and `label` columns; see the module docstring for the checks.

    A validation file may hold fewer rows and a single class (`min_rows=1, min_classes=1`).
    """
    path = Path(path)
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    text_col, label_col = _header(reader, path)
    texts, labels, lines = [], [], []
    start = reader.line_num + 1
    try:
        for row in reader:
            if any(field.strip() for field in row):
                text, label = _row(row, text_col, label_col, path, start)
                texts.append(text)
                labels.append(label)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as err:
        raise DataError(f"{path}: line {start}: not valid CSV ({err}); quote fields that hold commas or "
                        "line breaks with double quotes") from None
    if len(texts) < min_rows:
        raise DataError(f"{path}: too few rows of text ({len(texts)}); give at least {min_rows} labelled rows")
    if len(set(labels)) < min_classes:
        raise DataError(f"{path}: every row has the label {labels[0]!r}; a classifier needs at least two classes")
    return LabelledTexts(texts, labels, lines)


def _row(row: list[str], text_col: int, label_col: int, path: Path, line: int) -> tuple[str, str]:
    text = row[text_col].strip() if text_col < len(row) else ""
    label = row[label_col].strip() if label_col < len(row) else ""
    if not text:
        raise DataError(f"{path}: line {line}: the text is empty; give every row some text or delete it")
    if not label:
        raise DataError(f"{path}: line {line}: the label is empty; give every row a label or delete it")
    return text, label


def read_conll(path: str | Path, min_sentences: int = 2, min_tags: int = 2) -> TaggedSentences:
    """Sentences of a CoNLL-style file (token first, tag last, blank lines between sentences).

    A validation file may hold one sentence and a single tag (`min_sentences=1, min_tags=1`).
    """
    path = Path(path)
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    lines: list[int] = []
    sentence: list[tuple[str, str]] = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] == DOCSTART:
            _close(sentence, tokens, tags)
            continue
        if len(fields) < 2:
            raise DataError(f"{path}: line {number}: {line.strip()[:40]!r} has no tag; write one "
                            "'token tag' pair per line (whitespace between), a blank line between sentences")
        if not sentence:
            lines.append(number)
        sentence.append((fields[0], fields[-1]))
    _close(sentence, tokens, tags)
    if len(tokens) < min_sentences:
        raise DataError(f"{path}: too few sentences ({len(tokens)}); give at least {min_sentences}, "
                        "separated by blank lines")
    distinct = {t for s in tags for t in s}
    if len(distinct) < min_tags:
        raise DataError(f"{path}: every token has the tag {next(iter(distinct))!r}; a tagger needs at least two tags")
    return TaggedSentences(tokens, tags, lines)


def _close(sentence: list[tuple[str, str]], tokens: list, tags: list) -> None:
    """Move a finished sentence (if any) into the lists and empty it."""
    if sentence:
        tokens.append([tok for tok, _ in sentence])
        tags.append([tag for _, tag in sentence])
        sentence.clear()
