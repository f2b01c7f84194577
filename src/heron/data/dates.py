"""Human-written dates and their ISO form: an offline data set for sequence-to-sequence models.

The classic first translation task for an attention model (the seeds' "date
translation"): the input is a date as people write it, "Tuesday, March 5,
2002", "05.03.02", "march 5th 2002", and the output is always "2002-03-05".
The input and output have different lengths and the characters that decide
each output position sit at different places in each format, which is what
attention has to learn to find.

Every pair comes from a `datetime.date` drawn with `random.Random(seed)`, so
a seed gives the same pairs on every machine, with no download. The
conventions that make each source unambiguous:

- numbers separated by "/", "." or " " are day, month, year (European order);
  numbers separated by "-" that start with a four-digit year, and eight-digit
  "20020305", are year, month, day;
- two-digit years follow Python's `strptime("%y")`: 69..99 are 1969..1999,
  00..68 are 2000..2068; dates are drawn from that window, 1969-01-01 to
  2068-12-31, so a two-digit year is never ambiguous;
- month and day names are English, whatever the locale.

`date_pairs(n, seed)` returns the pairs, `write_date_pairs(path, n, seed)`
writes them as a `source<TAB>target` file, the format `heron translate train`
reads.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from pathlib import Path

__all__ = ["FORMATS", "FIRST_DAY", "LAST_DAY", "random_date", "format_date", "date_pairs", "write_date_pairs"]

FIRST_DAY = dt.date(1969, 1, 1)
LAST_DAY = dt.date(2068, 12, 31)

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th ... 11th, 12th, 13th ... 21st, 22nd, 23rd ... 31st."""
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _parts(d: dt.date) -> dict[str, str]:
    month, weekday = MONTHS[d.month - 1], DAYS[d.weekday()]
    return {
        "d": str(d.day), "dd": f"{d.day:02d}", "dth": _ordinal(d.day),
        "m": str(d.month), "mm": f"{d.month:02d}",
        "B": month, "b": month[:3], "A": weekday, "a": weekday[:3],
        "Y": str(d.year), "y": f"{d.year % 100:02d}",
    }


# name -> template over the parts above; a trailing ":lower" or ":upper" changes the case of the result.
FORMATS: dict[str, str] = {
    "d B Y": "{d} {B} {Y}",                 # 3 May 1998
    "dd B Y": "{dd} {B} {Y}",               # 03 May 1998
    "A, B d, Y": "{A}, {B} {d}, {Y}",       # Tuesday, March 5, 2002
    "a, d b Y": "{a}, {d} {b} {Y}",         # Tue, 5 Mar 2002
    "A d B Y": "{A} {d} {B} {Y}",           # Tuesday 5 March 2002
    "dd/mm/y": "{dd}/{mm}/{y}",             # 05/03/02
    "d/m/Y": "{d}/{m}/{Y}",                 # 5/3/2002
    "dd/mm/Y": "{dd}/{mm}/{Y}",             # 05/03/2002
    "b dth Y:lower": "{B} {dth} {Y}:lower",  # march 5th 2002
    "dth of B Y": "{dth} of {B} {Y}",       # 5th of March 2002
    "the dth of B, Y:lower": "the {dth} of {B}, {Y}:lower",  # the 5th of march, 2002
    "d.m.Y": "{d}.{m}.{Y}",                 # 5.3.2002
    "dd.mm.y": "{dd}.{mm}.{y}",             # 05.03.02
    "B d Y:upper": "{B} {d} {Y}:upper",     # MARCH 5 2002
    "Y-m-d": "{Y}-{m}-{d}",                 # 2002-3-5
    "Y/mm/dd": "{Y}/{mm}/{dd}",             # 2002/03/05 (four digits first: year first)
    "b d, Y": "{b} {d}, {Y}",               # Mar 5, 2002
    "d b y:lower": "{d} {b} {y}:lower",     # 5 mar 02
    "dd-b-Y": "{dd}-{b}-{Y}",               # 05-Mar-2002
    "Y B d": "{Y} {B} {d}",                 # 2002 March 5
    "Ymmdd": "{Y}{mm}{dd}",                 # 20020305
    "d B Y:upper": "{d} {B} {Y}:upper",     # 5 MARCH 2002
    "B dth, Y": "{B} {dth}, {Y}",           # March 5th, 2002
    "a b d Y": "{a} {b} {d} {Y}",           # Tue Mar 5 2002
}


def format_date(d: dt.date, name: str) -> str:
    """`d` written in the format `name` (a key of FORMATS)."""
    template, _, case = FORMATS[name].partition(":")
    text = template.format(**_parts(d))
    return text.lower() if case == "lower" else text.upper() if case == "upper" else text


def random_date(rng: random.Random, first: dt.date = FIRST_DAY, last: dt.date = LAST_DAY) -> dt.date:
    """A day drawn uniformly from `first` to `last`, both included."""
    return first + dt.timedelta(days=rng.randrange((last - first).days + 1))


def date_pairs(n: int, seed: int = 0, formats: list[str] | None = None,
               exclude: set[str] | Callable[[str], bool] | None = None) -> list[tuple[str, str]]:
    """`n` (human-written date, ISO date) pairs, the same for the same seed.

    Each pair draws a day and a format uniformly. `exclude` is a set of
    sources (or a test on the source) that must not appear, e.g. the training
    sources when drawing a held-back set.
    """
    rng = random.Random(seed)
    names = list(formats or FORMATS)
    skip = exclude.__contains__ if isinstance(exclude, set) else exclude
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:
        day = random_date(rng)
        source = format_date(day, rng.choice(names))
        if skip is not None and skip(source):
            continue
        pairs.append((source, day.isoformat()))
    return pairs


def write_date_pairs(path: str | Path, n: int, seed: int = 0,
                     exclude: set[str] | None = None) -> list[tuple[str, str]]:
    """Write `n` date pairs to `path` as `source<TAB>target` lines (atomically); returns the pairs."""
    from heron._atomic import atomic_write_text

    pairs = date_pairs(n, seed, exclude=exclude)
    atomic_write_text(Path(path), "".join(f"{source}\t{target}\n" for source, target in pairs))
    return pairs
