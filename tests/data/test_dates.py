"""The date pairs generator: deterministic, many formats, and every source really is its target's day."""

from __future__ import annotations

import datetime as dt
import re

from heron.data.dates import FIRST_DAY, FORMATS, LAST_DAY, date_pairs, format_date, write_date_pairs

# Written here, apart from the generator's templates: how a reader parses each way of writing a date
# (after ordinal suffixes and "the"/"of" are removed). Numbers with / . or space are day-month-year.
READ_PATTERNS = [
    "%d %B %Y", "%A, %B %d, %Y", "%a, %d %b %Y", "%A %d %B %Y", "%d/%m/%y", "%d/%m/%Y", "%B %d %Y",
    "%d %B, %Y", "%d.%m.%Y", "%d.%m.%y", "%Y-%m-%d", "%Y/%m/%d", "%b %d, %Y", "%d %b %y", "%d-%b-%Y",
    "%Y %B %d", "%Y%m%d", "%B %d, %Y", "%a %b %d %Y",
]


def _read(source: str) -> dt.date:
    text = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", source, flags=re.IGNORECASE)
    text = re.sub(r"^the |\bof ", "", text, flags=re.IGNORECASE)
    for pattern in READ_PATTERNS:
        try:
            return dt.datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise AssertionError(f"no pattern reads {source!r}")


def test_the_same_seed_gives_the_same_pairs_and_another_seed_others():
    assert date_pairs(200, seed=3) == date_pairs(200, seed=3)
    assert date_pairs(200, seed=3) != date_pairs(200, seed=4)


def test_targets_are_iso_dates_of_the_source_day():
    pairs = date_pairs(600, seed=1)
    for source, target in pairs:
        day = dt.date.fromisoformat(target)
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", target)
        assert FIRST_DAY <= day <= LAST_DAY
        assert _read(source) == day, (source, target)


def test_every_format_is_read_back_and_the_sources_vary():
    day = dt.date(2002, 3, 5)  # a Tuesday
    written = {name: format_date(day, name) for name in FORMATS}
    assert len(FORMATS) >= 20 and len(set(written.values())) == len(FORMATS)
    assert {"5 March 2002", "Tuesday, March 5, 2002", "05/03/02", "march 5th 2002", "5.3.2002",
            "MARCH 5 2002", "2002-3-5"} <= set(written.values())
    for text in written.values():
        assert _read(text) == day, text
    assert format_date(dt.date(2011, 12, 22), "dth of B Y") == "22nd of December 2011"
    assert format_date(dt.date(2011, 12, 13), "dth of B Y") == "13th of December 2011"


def test_pairs_file_has_a_tab_per_line_and_exclusion_keeps_sets_apart(tmp_path):
    train = write_date_pairs(tmp_path / "train.tsv", 300, seed=0)
    lines = (tmp_path / "train.tsv").read_text(encoding="utf-8").splitlines()
    assert [tuple(line.split("\t")) for line in lines] == train
    held = date_pairs(300, seed=0, exclude={s for s, _ in train})  # the same seed: every clash must be skipped
    assert not {s for s, _ in held} & {s for s, _ in train}
    assert len(held) == 300
