"""report.html: self-contained, escaped, well-formed, written atomically."""

from __future__ import annotations

import html
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from heron.interpret import report
from heron.interpret.report import write_report

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_EVIL = "<script>alert(1)</script>"


class _StrictParser(HTMLParser):
    """Collects tags, attributes and text; records any unbalanced or misnested tag."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.starts: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.decl = None

    def handle_decl(self, decl):
        self.decl = decl

    def handle_starttag(self, tag, attrs):
        self.starts.append((tag, dict(attrs)))
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.starts.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(text: str) -> _StrictParser:
    parser = _StrictParser()
    parser.feed(text)
    parser.close()
    assert parser.problems == [] and parser.stack == [], (parser.problems, parser.stack)
    assert parser.decl and parser.decl.lower() == "doctype html"
    return parser


def _png(path, colour=(30, 120, 200), size=(160, 120)):
    Image.new("RGB", size, colour).save(path)


def _metrics():
    rows = [{"phase": "head", "epoch": i, "train_loss": 1.0 / (i + 1), "valid_loss": 0.9 / (i + 1),
             "valid_accuracy": 0.7 + 0.05 * i, "seconds": 3.25, "lr": 1e-3} for i in range(3)]
    rows += [{"phase": "finetune", "epoch": i, "train_loss": 0.3, "valid_loss": None,
              "valid_accuracy": None if i == 0 else 0.9 - 0.01 * i, "seconds": 9.0, "lr": 1e-4} for i in range(2)]
    return rows


@pytest.fixture
def run(tmp_path):
    """A run folder holding two figures and a config, and the arguments of write_report."""
    _png(tmp_path / "history.png")
    _png(tmp_path / "confusion.png", (200, 40, 40), (1200, 900))
    kwargs = dict(
        title="cats & dogs",
        summary={"dataset": "data/", "classes": f"cat, {_EVIL}", "backbone": "efficientnet_lite0",
                 "best valid accuracy": 0.9, "time": "12 s"},
        metrics=_metrics(),
        per_class=[{"class": "cat", "precision": 0.9, "recall": 0.8, "support": 10},
                   {"class": _EVIL, "precision": 0.5, "recall": 0.25, "support": 4}],
        figures=[("Training history", "history.png"), ("Confusion <matrix>", "confusion.png")],
        errors=["data/train/cat/bad.jpg: cannot identify image file", f"data/train/{_EVIL}/x.png: empty file"],
        config={"backbone": "efficientnet_lite0", "lr": 0.001, "note": "</pre><b>x</b>"},
    )
    return tmp_path, kwargs


def test_report_is_written_and_well_formed(run):
    run_dir, kwargs = run
    path = write_report(run_dir, **kwargs)
    assert path == run_dir / "report.html"
    text = path.read_text(encoding="utf-8")
    parser = _parse(text)
    imgs = [a["src"] for tag, a in parser.starts if tag == "img"]
    assert imgs == ["history.png", "confusion.png"]
    assert 'src="history.png"' in text and 'src="confusion.png"' in text
    # self-contained: no scripts, no external resources
    assert not any(tag in {"script", "link", "iframe"} for tag, _ in parser.starts)
    assert "http://" not in text and "https://" not in text
    assert sorted(p.name for p in run_dir.iterdir()) == ["confusion.png", "history.png", "report.html"]


def test_user_strings_are_escaped(run):
    run_dir, kwargs = run
    text = write_report(run_dir, **kwargs).read_text(encoding="utf-8")
    assert "<script" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<b>x</b>" not in text and "Confusion &lt;matrix&gt;" in text
    parser = _parse(text)
    shown = "".join(parser.text)
    assert _EVIL in shown  # the name still reads correctly once decoded
    assert "cats & dogs" in shown


def test_tables_summary_errors_and_config(run):
    run_dir, kwargs = run
    text = write_report(run_dir, **kwargs).read_text(encoding="utf-8")
    parser = _parse(text)
    shown = "".join(parser.text)
    for key in kwargs["summary"]:
        assert key in shown
    # one body row per epoch in the metrics table, one per class in the per-class table
    assert text.count("<tr") == (1 + len(kwargs["metrics"])) + (1 + len(kwargs["per_class"]))
    assert "Skipped files (2)" in shown
    for error in kwargs["errors"]:
        assert error in shown
    details = [tag for tag, _ in parser.starts if tag in ("details", "summary", "pre")]
    assert details == ["details", "summary", "pre"]
    pre = text[text.index("<pre>") + 5:text.index("</pre>")]
    assert json.loads(html.unescape(pre)) == kwargs["config"]
    # the best epoch (highest valid accuracy) is highlighted, missing values shown as a dash
    best = int(np.nanargmax([r["valid_accuracy"] or np.nan for r in kwargs["metrics"]]))
    assert text.count('class="best"') == 1
    row = text.split('<tr class="best">')[1].split("</tr>")[0]
    assert f'<td class="num">{best + 1}</td>' in row
    assert "\u2014" in shown


def test_missing_parts_and_odd_file_names(tmp_path):
    _png(tmp_path / "my fig #1.png")
    path = write_report(tmp_path, "t", {}, [], None, [("odd", "my fig #1.png"), ("gone", "nothere.png")],
                        None, None)
    text = path.read_text(encoding="utf-8")
    parser = _parse(text)
    shown = "".join(parser.text)
    assert [a["src"] for tag, a in parser.starts if tag == "img"] == ["my%20fig%20%231.png"]
    assert "figure not found: nothere.png" in shown
    assert "No files were skipped." in shown and "Skipped files (0)" in shown
    assert "Per-class" not in shown and "<table" not in text


def test_long_error_list_is_capped(tmp_path):
    errors = [f"f{i}.jpg: corrupt" for i in range(report._MAX_ERRORS_SHOWN + 5)]
    text = write_report(tmp_path, "t", {}, [], None, [], errors, {}).read_text(encoding="utf-8")
    _parse(text)
    assert f"Skipped files ({len(errors)})" in text
    assert text.count("<li>") == report._MAX_ERRORS_SHOWN and "and 5 more" in text


def test_failed_write_keeps_old_report_and_leaves_no_temp(run, monkeypatch):
    run_dir, kwargs = run
    path = write_report(run_dir, **kwargs)
    before = path.read_bytes()

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_report(run_dir, **{**kwargs, "title": "new"})
    assert path.read_bytes() == before
    assert sorted(p.name for p in run_dir.iterdir()) == ["confusion.png", "history.png", "report.html"]
