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


# ---------------------------------------------------------------- the fit diagnosis


def _diagnosis_section(text: str) -> str:
    start = text.index('<section id="diagnosis"')
    return text[start:text.index("</section>", start)]


def test_diagnosis_is_a_section_under_the_header_with_badge_reasons_and_ordered_remedies(run):
    from heron.train.diagnosis import Diagnosis

    run_dir, kwargs = run
    diag = Diagnosis("overfitting",
                     reasons=["valid loss rose 38% from its best 0.38 at epoch 4", f"class {_EVIL} is odd"],
                     remedies=["more data: more labelled images per class", "data augmentation: --precompute-aug 4",
                               "regularisation: --dropout 0.5, --weight-decay 0.1"],
                     line="diagnosis: overfitting (...)")
    text = write_report(run_dir, **kwargs, diagnosis=diag).read_text(encoding="utf-8")
    parser = _parse(text)
    # right after the header and nav, before every other section
    assert text.index("</nav>") < text.index('id="diagnosis"') < text.index('id="figures"')
    assert '<nav><a href="#diagnosis">Diagnosis</a>' in text
    section = _diagnosis_section(text)
    assert 'class="diagnosis tone-warn"' in section and '<span class="badge">overfitting</span>' in section
    reasons = section[section.index("<ul>"):section.index("</ul>")]
    assert reasons.count("<li>") == 2 and "&lt;script&gt;" in reasons and "<script" not in text
    remedies = section[section.index("<ol>"):section.index("</ol>")]
    items = [html.unescape(li.split("</li>")[0]) for li in remedies.split("<li>")[1:]]
    assert [i.split(":")[0] for i in items] == ["more data", "data augmentation", "regularisation"]
    assert "<code>--precompute-aug 4</code>" in remedies
    assert "<code>--dropout 0.5</code>, <code>--weight-decay 0.1</code>" in remedies
    shown = "".join(parser.text)
    assert "valid loss rose 38% from its best 0.38 at epoch 4" in shown and "What to try, in this order" in shown


@pytest.mark.parametrize("verdict, tone", [("good fit", "tone-good"), ("underfitting", "tone-warn"),
                                           ("overfitting", "tone-warn"), ("unknown", "tone-none"),
                                           ("<odd>", "tone-none")])
def test_diagnosis_as_a_dict_and_its_badge_colour(tmp_path, verdict, tone):
    diag = {"verdict": verdict, "reasons": ["train 0.01 / valid 0.08"], "remedies": []}
    text = write_report(tmp_path, "t", {}, [], None, [], None, None, diagnosis=diag).read_text(encoding="utf-8")
    _parse(text)
    section = _diagnosis_section(text)
    assert f'class="diagnosis {tone}"' in section
    assert f'<span class="badge">{html.escape(verdict)}</span>' in section
    assert "<ol>" not in section and section.count("<li>") == 1  # no remedies: no list for them
    assert f".{tone} {{ --tone:" in text  # the colour it names is defined


def test_a_real_diagnosis_renders_and_the_report_without_one_is_unchanged(run):
    from heron.train.diagnosis import diagnose

    run_dir, kwargs = run
    before = write_report(run_dir, **kwargs).read_text(encoding="utf-8")
    assert 'id="diagnosis"' not in before and 'href="#diagnosis"' not in before
    history = [{"phase": "head", "epoch": i + 1, "train_loss": t, "valid_loss": v}
               for i, (t, v) in enumerate(zip([3.6, 3.3, 2.9, 2.6, 2.37], [3.5, 3.2, 2.9, 2.6, 2.45]))]
    diag = diagnose(history, num_classes=40, train_images=280, steps=25)
    text = write_report(run_dir, **kwargs, diagnosis=diag).read_text(encoding="utf-8")
    _parse(text)
    section = _diagnosis_section(text)
    assert "underfitting" in section and section.count("<li>") == len(diag.reasons) + len(diag.remedies)
    assert "train loss 2.37 vs chance 3.69 after 25 optimizer steps" in section
    # everything else on the page is what it was without the diagnosis
    assert text.replace(section + "</section>", "").replace('<a href="#diagnosis">Diagnosis</a>', "") == before
