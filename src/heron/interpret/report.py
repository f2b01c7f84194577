"""The HTML report of a training run: one self-contained page in the run folder.

`write_report` turns what a run produced (summary numbers, the fit diagnosis,
per-epoch metrics, per-class precision and recall, the PNG figures beside it,
skipped files and the config) into `report.html`: inline CSS, no scripts, no
network, images by relative path so the folder can be moved or zipped as a
whole. Class and file names come from users' folders, so every string is
HTML-escaped. The file is written atomically (temp file + rename).
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from heron._atomic import atomic_write_text

__all__ = ["write_report", "REPORT_CSS", "esc", "summary_html", "figures_html", "table_html", "errors_html"]

_MAX_ERRORS_SHOWN = 1000

REPORT_CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --soft: #f5f7fa; --accent: #1f6feb; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.45;
  font: 15px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 48px; }
header { border-bottom: 2px solid var(--line); padding-bottom: 18px; margin-bottom: 8px; }
h1 { font-size: 26px; margin: 0 0 4px; overflow-wrap: anywhere; }
.sub { color: var(--muted); font-size: 13px; margin: 0 0 16px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; font-size: 14px; }
h2 { font-size: 19px; margin: 32px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 10px; }
.card { background: var(--soft); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .v { font-size: 18px; font-weight: 600; overflow-wrap: anywhere; }
.figs { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 18px;
  grid-auto-flow: dense; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 10px; background: #fff; }
figure.wide { grid-column: 1 / -1; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; text-align: center; }
.missing { color: #b42318; font-size: 13px; padding: 24px; text-align: center; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
th { background: var(--soft); font-weight: 600; position: sticky; top: 0; }
td.num, th.num { text-align: right; }
tbody tr:nth-child(even) { background: #fbfcfd; }
tr.best td { background: #e8f3ff; font-weight: 600; }
.meter { display: inline-block; width: 64px; height: 7px; margin-right: 8px; vertical-align: middle;
  background: var(--line); border-radius: 4px; overflow: hidden; }
.meter i { display: block; height: 100%; background: #4c8df6; }
td.name { white-space: normal; overflow-wrap: anywhere; max-width: 360px; }
.errors { max-height: 320px; overflow: auto; background: var(--soft); border: 1px solid var(--line);
  border-radius: 8px; padding: 8px 12px 8px 32px; margin: 0; font: 12.5px/1.6 ui-monospace, Menlo, Consolas, monospace; }
.errors li { overflow-wrap: anywhere; }
.ok { color: #1b7f3b; }
details { border: 1px solid var(--line); border-radius: 8px; background: var(--soft); }
summary { cursor: pointer; padding: 10px 12px; font-weight: 600; }
pre { margin: 0; padding: 12px; overflow: auto; max-height: 520px; border-top: 1px solid var(--line);
  font: 12.5px/1.5 ui-monospace, Menlo, Consolas, monospace; background: #fff; }
footer { color: var(--muted); font-size: 12px; margin-top: 36px; }
.diagnosis { margin-top: 22px; border: 1px solid var(--line); border-left: 6px solid var(--tone);
  border-radius: 8px; padding: 14px 18px 6px; background: var(--tone-soft); }
.diagnosis h2 { margin: 0 0 10px; border: 0; padding: 0; display: flex; align-items: center; gap: 12px; }
.badge { display: inline-block; padding: 3px 12px; border-radius: 999px; font-size: 14px; font-weight: 700;
  letter-spacing: .02em; color: #fff; background: var(--tone); }
.tone-good { --tone: #1b7f3b; --tone-soft: #eef8f1; }
.tone-warn { --tone: #b25e09; --tone-soft: #fff7eb; }
.tone-none { --tone: #667085; --tone-soft: #f5f7fa; }
.diag-cols { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); gap: 6px 28px; }
.diagnosis h3 { font-size: 13px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted);
  margin: 4px 0 6px; }
.diagnosis ul, .diagnosis ol { margin: 0 0 10px; padding-left: 22px; }
.diagnosis li { margin: 3px 0; overflow-wrap: anywhere; }
.diagnosis ol li::marker { font-weight: 700; color: var(--tone); }
.diagnosis code { font: 12.5px ui-monospace, Menlo, Consolas, monospace; background: #fff;
  border: 1px solid var(--line); border-radius: 4px; padding: 0 3px; white-space: nowrap; }
"""

_VERDICT_TONE = {"good fit": "tone-good", "underfitting": "tone-warn", "overfitting": "tone-warn"}
# a `heron train` flag and its value in a remedy ("--dropout 0.5", "heron summary --list")
_FLAG = re.compile(r"((?:heron [a-z]+ )?--[a-z][a-z-]*"
                   r"(?: (?:[0-9][0-9.e-]*|all|photo|light|none|gap|dense|linear)\b)?)")


# ---------------------------------------------------------------- formatting


def esc(value: Any) -> str:
    """Any value as escaped HTML text (quotes included, for attributes)."""
    return html.escape(str(value), quote=True)


def _is_number(value: Any) -> bool:
    """True for ints and floats (not bools)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(value: Any, style: str = "auto") -> str:
    """A value as short text; floats by `style`: "auto", "sci" or "seconds".

    "auto" gives 4 decimals (scientific for tiny or huge values), "sci" always
    scientific (learning rates), "seconds" one decimal.
    """
    if value is None:
        return "\u2014"
    if not isinstance(value, float) or not math.isfinite(value):
        return str(value)
    if style == "seconds":
        return f"{value:.1f}"
    if style == "sci" or (value != 0 and not 1e-3 <= abs(value) < 1e5):
        return f"{value:.2e}"
    return f"{value:.4f}"


def _column_style(rows: Sequence[Mapping[str, Any]], key: str) -> str:
    """How to format a whole column, so its numbers line up."""
    if key.endswith("seconds") or key == "time":
        return "seconds"
    values = [abs(r[key]) for r in rows if isinstance(r.get(key), float) and r[key]]
    if values and all(v < 1e-2 or v >= 1e5 for v in values):
        return "sci"
    return "auto"


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys of all rows in order of first appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _numeric(rows: Sequence[Mapping[str, Any]], key: str) -> bool:
    """True when every present value of `key` is a number (or None)."""
    values = [r.get(key) for r in rows if r.get(key) is not None]
    return bool(values) and all(_is_number(v) for v in values)


def _fraction_column(rows: Sequence[Mapping[str, Any]], key: str) -> bool:
    """True when `key` holds floats in [0, 1] (precision, recall, f1...)."""
    values = [r.get(key) for r in rows if r.get(key) is not None]
    return bool(values) and all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in values)


# ---------------------------------------------------------------- sections


def summary_html(summary: Mapping[str, Any]) -> str:
    """Summary entries as a grid of small cards."""
    if not summary:
        return ""
    cards = "".join(
        f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(_fmt(v))}</div></div>'
        for k, v in summary.items())
    return f'<div class="cards">{cards}</div>'


def figures_html(run_dir: Path, figures: Sequence[tuple[str, str]], pending: bool = False) -> str:
    """Each figure as a linked <img> with its caption (a note if the file is missing).

    `pending`: the PNGs are still being drawn by another process, so a missing
    one is listed as an <img> without a size, which a browser shows once it is there.
    """
    if not figures:
        return '<p class="sub">No figures were written.</p>'
    parts = []
    for caption, filename in figures:
        rel = str(filename).replace("\\", "/")
        src = esc(quote(rel, safe="/"))
        size = _png_size(run_dir / rel)
        wide = size is not None and (size[0] >= 1000 or size[0] > 1.6 * size[1])
        if size is not None:
            body = (f'<a href="{src}"><img src="{src}" alt="{esc(caption)}" '
                    f'width="{size[0]}" height="{size[1]}"></a>')
        elif pending:
            parts.append(f'<figure><a href="{src}"><img src="{src}" alt="{esc(caption)}"></a>'
                         f'<figcaption>{esc(caption)} (being drawn)</figcaption></figure>')
            continue
        else:
            body = f'<div class="missing">figure not found: {esc(rel)}</div>'
        attrs = ' class="wide"' if wide else ""
        parts.append(f"<figure{attrs}>{body}"
                     f"<figcaption>{esc(caption)}</figcaption></figure>")
    return f'<div class="figs">{"".join(parts)}</div>'


def _png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG's header, None if `path` is not a readable PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def table_html(rows: Sequence[Mapping[str, Any]], index: bool = False,
                best_key: str | None = None, bars: bool = False) -> str:
    """Rows of dicts as a table; numbers right-aligned, optional best-row highlight.

    `index` adds a running "#" column; `best_key` highlights the row with the
    highest value of that key; `bars` draws a faint bar behind [0, 1] values.
    """
    columns = _columns(rows)
    numeric = {c: _numeric(rows, c) for c in columns}
    fraction = {c: bars and _fraction_column(rows, c) for c in columns}
    style = {c: _column_style(rows, c) for c in columns}
    best = _best_row(rows, best_key)
    head = ('<th class="num">#</th>' if index else "") + "".join(
        f'<th class="num">{esc(c)}</th>' if numeric[c] else f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows):
        cells = [f'<td class="num">{i + 1}</td>'] if index else []
        for c in columns:
            value = row.get(c)
            if fraction[c] and value is not None:
                cells.append(f'<td class="num"><span class="meter"><i style="width: {100 * value:.1f}%">'
                             f'</i></span>{esc(_fmt(value, style[c]))}</td>')
            elif numeric[c]:
                cells.append(f'<td class="num">{esc(_fmt(value, style[c]))}</td>')
            else:
                cells.append(f'<td class="name">{esc(_fmt(value))}</td>')
        attrs = ' class="best"' if i == best else ""
        body.append(f'<tr{attrs}>{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _best_row(rows: Sequence[Mapping[str, Any]], key: str | None) -> int | None:
    """Index of the row with the highest numeric `key`, None if there is none."""
    scored = [(r.get(key), i) for i, r in enumerate(rows) if key and _is_number(r.get(key))]
    scored = [(v, i) for v, i in scored if math.isfinite(v)]
    return max(scored, key=lambda t: (t[0], -t[1]))[1] if scored else None


def _diagnosis_parts(diagnosis: Any) -> tuple[str, list[str], list[str]]:
    """(verdict, reasons, remedies) of a `heron.train.diagnosis.Diagnosis` or a dict with those keys."""
    if isinstance(diagnosis, Mapping):
        get = diagnosis.get
    else:
        def get(key, default=None):
            return getattr(diagnosis, key, default)
    return (str(get("verdict") or "unknown"), [str(r) for r in get("reasons") or []],
            [str(r) for r in get("remedies") or []])


def _with_flags(text: str) -> str:
    """Escaped text with the `heron train` flags in it (--dropout 0.5) set as code."""
    return _FLAG.sub(r"<code>\1</code>", esc(text))


def _diagnosis_html(diagnosis: Any) -> str:
    """The verdict as a coloured badge, the reasons as a list, the remedies as an ordered list."""
    verdict, reasons, remedies = _diagnosis_parts(diagnosis)
    tone = _VERDICT_TONE.get(verdict, "tone-none")
    cols = []
    if reasons:
        cols.append("<div><h3>Why</h3><ul>" + "".join(f"<li>{esc(r)}</li>" for r in reasons) + "</ul></div>")
    if remedies:
        cols.append("<div><h3>What to try, in this order</h3><ol>"
                    + "".join(f"<li>{_with_flags(r)}</li>" for r in remedies) + "</ol></div>")
    body = f'<div class="diag-cols">{"".join(cols)}</div>' if cols else ""
    return (f'<section id="diagnosis" class="diagnosis {tone}"><h2>Diagnosis '
            f'<span class="badge">{esc(verdict)}</span></h2>{body}</section>')


def errors_html(errors: Sequence[str] | None) -> str:
    """The skipped files as a scrolling list, or a line saying there were none."""
    if not errors:
        return '<p class="ok">No files were skipped.</p>'
    shown = errors[:_MAX_ERRORS_SHOWN]
    items = "".join(f"<li>{esc(e)}</li>" for e in shown)
    more = len(errors) - len(shown)
    tail = f'<p class="sub">\u2026 and {more} more.</p>' if more > 0 else ""
    return f'<ol class="errors">{items}</ol>{tail}'


def _config_html(config: Mapping[str, Any] | None) -> str:
    """The config as pretty JSON inside a collapsed <details> block."""
    if config is None:
        return '<p class="sub">No configuration recorded.</p>'
    text = json.dumps(config, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    return f"<details><summary>config.json</summary><pre>{esc(text)}</pre></details>"


# ---------------------------------------------------------------- page


def _page(run_dir: Path, title: str, summary, metrics, per_class, figures, errors, config,
          diagnosis=None, pending: bool = False) -> str:
    """The whole report page as one HTML string."""
    from heron import __version__

    top = _diagnosis_html(diagnosis) if diagnosis is not None else ""
    sections = [("figures", "Figures", figures_html(run_dir, figures, pending))]
    if metrics:
        sections.append(("metrics", "Metrics per epoch",
                         table_html(metrics, index=True, best_key="valid_accuracy")))
    if per_class:
        sections.append(("per-class", "Per-class precision and recall", table_html(per_class, bars=True)))
    count = len(errors or [])
    sections.append(("skipped", f"Skipped files ({count})", errors_html(errors)))
    sections.append(("config", "Configuration", _config_html(config)))

    nav = ('<a href="#diagnosis">Diagnosis</a>' if top else "") + "".join(
        f'<a href="#{sid}">{esc(name)}</a>' for sid, name, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{esc(name)}</h2>{content}</section>'
                   for sid, name, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{REPORT_CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<header><h1>{esc(title)}</h1><p class=\"sub\">run folder: {esc(run_dir.name)}</p>"
        f"{summary_html(summary)}</header>\n<nav>{nav}</nav>\n{top}{body}\n"
        f"<footer>Written by heron {esc(__version__)}.</footer>\n</main>\n</body>\n</html>\n"
    )


def write_report(run_dir: str | os.PathLike, title: str, summary: Mapping[str, str | float],
                 metrics: list[dict], per_class: list[dict] | None,
                 figures: list[tuple[str, str]], errors: list[str] | None,
                 config: dict | None, *, diagnosis: Any = None, figures_pending: bool = False) -> Path:
    """Write `run_dir/report.html`, the one-page report of a run, and return its path.

    `summary` maps a label ("dataset", "backbone", "best valid accuracy"...)
    to a value shown in the header; `metrics` are the metrics.jsonl rows (one
    table row per epoch, the best valid accuracy highlighted); `per_class`
    rows (class, precision, recall, ...) get their own table; `figures` are
    (caption, PNG file name relative to run_dir); `errors` lists skipped
    files; `config` is shown as collapsible JSON. `diagnosis` (a
    `heron.train.diagnosis.Diagnosis` or a dict with "verdict", "reasons" and
    "remedies") becomes a section right under the header: the verdict as a
    badge (green for a good fit, amber for under- or overfitting, grey when
    unknown), the reasons as a list and the remedies as an ordered list.
    `figures_pending`: another process is still drawing the figures.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    text = _page(run_dir, title, summary or {}, metrics or [], per_class, figures or [], errors, config, diagnosis,
                 figures_pending)
    return _write_atomic(run_dir / "report.html", text)


def _write_atomic(path: Path, text: str) -> Path:
    """Write UTF-8 `text` to `path` through a temp file in the same folder."""
    return atomic_write_text(path, text)
