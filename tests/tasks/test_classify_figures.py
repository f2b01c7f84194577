"""A run's figures: drawn inline, or by a background process after the result is written.

`write_outputs` is called directly on a small real dataset (no training), so
these tests check the figures machinery alone: which files appear when, that
they are real PNGs, that the report ends up showing every figure, and that a
figure that fails is logged without costing the others.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import torch
from PIL import Image

from heron.config import TrainConfig
from heron.data.folders import discover
from heron.data.transforms import Preprocessing
from heron.interpret import figures_job
from heron.interpret.figures_job import JOB_NAME, LOG_NAME, start_background, wait_for_figures
from heron.tasks._classify_report import _top_losses, describe_figures, write_outputs
from heron.train.lr_find import LRFinderResult
from heron.train.run import RunFolder

FIGURES = ["history.png", "confusion.png", "top_losses.png", "class_balance.png", "lr_find.png"]
_SECTION = re.compile(r'<section id="figures">.*?</section>', re.S)


class _Model:
    feature_kind = "pooled"


def _history():
    return [{"phase": "head", "epoch": i, "train_loss": 1.0 / (i + 1), "valid_loss": 1.2 / (i + 1),
             "valid_accuracy": 0.5 + 0.1 * i, "seconds": 0.5} for i in range(3)]


def _outputs(dataset, out, figures, lr=True, paths=None):
    """write_outputs for made-up validation probabilities; returns (run folder, metrics, seconds taken)."""
    data = discover(dataset, valid_pct=0.0)
    valid = paths or [p for p, _ in data.valid]
    targets = torch.tensor([t for _, t in data.valid][: len(valid)])
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(len(valid), len(data.classes), generator=gen) * 3, dim=1)
    config = TrainConfig(data=str(dataset), out=str(out), arch="resnet18", weights=None, quiet=True)
    lr_result = LRFinderResult([1e-4 * 1.5**i for i in range(20)], [2.0 - 0.05 * i for i in range(20)],
                               suggestion=1e-3) if lr else None
    run = RunFolder.create(str(out), "run")
    start = time.perf_counter()
    metrics = write_outputs(run, config, data, _Model(), Preprocessing(size=(32, 32), crop_pct=1.0), probs,
                            targets, valid, _history(), [], lr_result, 1.0, figures=figures)
    return run.path, metrics, time.perf_counter() - start


def _assert_png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.verify()
    with Image.open(path) as im:
        assert im.width >= 200 and im.height >= 150
        return im.convert("RGB").tobytes()


def _imgs(report: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', report)


def test_inline_figures_are_written_before_write_outputs_returns(color_dataset, tmp_path):
    run, metrics, _ = _outputs(color_dataset, tmp_path / "run", "inline")
    for name in FIGURES:
        _assert_png(run / name)
    assert not (run / JOB_NAME).exists() and not (run / LOG_NAME).exists()
    assert _imgs((run / "report.html").read_text()) == FIGURES
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_background_figures_follow_and_match_the_inline_ones(color_dataset, tmp_path):
    run, metrics, seconds = _outputs(color_dataset, tmp_path / "bg", "background")
    # The result is all there at once; the figures are promised in the report.
    saved = json.loads((run / "config.json").read_text())
    assert saved["result"]["metrics"]["accuracy"] == metrics["accuracy"]
    assert (run / "errors.txt").read_text() == ""
    assert _imgs((run / "report.html").read_text()) == FIGURES  # listed at once, drawn or not
    assert wait_for_figures(run, timeout=180), (run / LOG_NAME).read_text() if (run / LOG_NAME).exists() else ""
    assert not (run / JOB_NAME).exists() and not (run / LOG_NAME).exists()
    assert not list(run.glob(".*.tmp"))  # every PNG was renamed into place
    report = (run / "report.html").read_text()
    assert _imgs(report) == FIGURES and "(being drawn)" not in report  # the report's own, with sizes
    assert len(re.findall(r'<img [^>]*width="\d+" height="\d+"', report)) == len(FIGURES)

    inline, _, _ = _outputs(color_dataset, tmp_path / "inline", "inline")
    for name in FIGURES:
        assert _assert_png(run / name) == _assert_png(inline / name), name
    figures = [_SECTION.search((r / "report.html").read_text()).group(0) for r in (run, inline)]
    assert figures[0] == figures[1]
    assert seconds < 5.0  # no matplotlib, no decoding in the caller (generous: the machine is shared)


def test_no_figures_and_no_lr_finder(color_dataset, tmp_path):
    run, _, _ = _outputs(color_dataset, tmp_path / "none", "none")
    assert not list(run.glob("*.png")) and not (run / JOB_NAME).exists()
    assert "No figures were written" in (run / "report.html").read_text()
    run, _, _ = _outputs(color_dataset, tmp_path / "nolr", "inline", lr=False)
    assert sorted(p.name for p in run.glob("*.png")) == sorted(set(FIGURES) - {"lr_find.png"})


def test_unreadable_top_loss_files_are_skipped(color_dataset, tmp_path):
    data = discover(color_dataset, valid_pct=0.0)
    paths = [p for p, _ in data.valid]
    broken = tmp_path / "gone.jpg"
    broken.write_bytes(b"not a jpeg")
    run, _, _ = _outputs(color_dataset, tmp_path / "some", "inline", paths=[broken, *paths[1:]])
    _assert_png(run / "top_losses.png")
    # every top-loss photo unreadable: that figure is left out, the others are drawn
    run, _, _ = _outputs(color_dataset, tmp_path / "all", "background", paths=[broken] * len(paths))
    assert wait_for_figures(run, timeout=180)
    assert sorted(p.name for p in run.glob("*.png")) == sorted(set(FIGURES) - {"top_losses.png"})
    assert "top_losses.png" not in (run / "report.html").read_text()
    assert not (run / LOG_NAME).exists()


def test_top_losses_are_the_highest_losses_first_at_most_twelve(tmp_path):
    probs = torch.softmax(torch.randn(30, 3, generator=torch.Generator().manual_seed(1)), dim=1)
    targets = torch.randint(0, 3, (30,), generator=torch.Generator().manual_seed(2))
    paths = [tmp_path / f"{i}.jpg" for i in range(30)]
    items = _top_losses(["a", "b", "c"], probs, targets, paths)
    losses = -probs[torch.arange(30), targets].log()
    assert len(items) == 12
    assert [i["loss"] for i in items] == sorted(losses.tolist(), reverse=True)[:12]
    first = int(losses.argmax())
    assert items[0]["name"] == f"{first}.jpg" and items[0]["label"] == "abc"[int(targets[first])]
    assert items[0]["pred"] == "abc"[int(probs[first].argmax())]


def test_a_failing_figure_is_logged_and_the_others_are_written(color_dataset, tmp_path):
    data = discover(color_dataset, valid_pct=0.0)
    paths = [p for p, _ in data.valid]
    targets = torch.tensor([t for _, t in data.valid])
    probs = torch.full((len(paths), 3), 1 / 3)
    metrics = {"confusion": [[1, 2], [3, 4]]}  # wrong shape for three classes: plot_confusion raises
    job = describe_figures(data, Preprocessing(size=(32, 32), crop_pct=1.0), probs, targets, paths, _history(),
                           metrics, None)
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.html").write_text('<html><section id="figures"><h2>Figures</h2>old</section></html>')
    handle = start_background(job, run)
    assert handle.wait(timeout=180) and handle.process.returncode == 1
    assert sorted(p.name for p in run.glob("*.png")) == ["class_balance.png", "history.png", "top_losses.png"]
    log = (run / LOG_NAME).read_text()
    assert "confusion.png: not drawn" in log and "does not match 3 classes" in log
    assert _imgs((run / "report.html").read_text()) == ["history.png", "top_losses.png", "class_balance.png"]
    assert not (run / JOB_NAME).exists()


def test_pending_figures_are_listed_then_filled_in(tmp_path):
    from heron.interpret.report import write_report

    figures = [("Loss & accuracy", "history.png"), ("Images per class", "class_balance.png")]
    write_report(tmp_path, "run", {}, [], None, figures, [], {}, figures_pending=True)
    text = (tmp_path / "report.html").read_text()
    assert _imgs(text) == ["history.png", "class_balance.png"] and text.count("(being drawn)") == 2
    assert "Loss &amp; accuracy" in text and '<section id="config">' in text
    Image.new("RGB", (300, 200), (10, 20, 30)).save(tmp_path / "history.png")
    assert figures_job.refresh_report(tmp_path, figures[:1])
    text = (tmp_path / "report.html").read_text()
    assert _imgs(text) == ["history.png"] and 'width="300" height="200"' in text and "being drawn" not in text
    (tmp_path / "report.html").write_text("<html>no figures here</html>")
    assert not figures_job.refresh_report(tmp_path, figures)


def test_a_broken_job_file_is_logged_and_marked_done(tmp_path):
    (tmp_path / JOB_NAME).write_text("{not json")
    assert figures_job.run_job_file(tmp_path / JOB_NAME) == 1
    assert not (tmp_path / JOB_NAME).exists()
    assert "failed" in (tmp_path / LOG_NAME).read_text()


def test_waiting_gives_up_after_the_timeout(tmp_path):
    (tmp_path / JOB_NAME).write_text("{}")
    start = time.monotonic()
    assert wait_for_figures(tmp_path, timeout=0.2) is False
    assert time.monotonic() - start < 2
    (tmp_path / JOB_NAME).unlink()
    assert wait_for_figures(tmp_path, timeout=0.2) is True


def test_an_unknown_figures_mode_is_refused(color_dataset, tmp_path):
    with pytest.raises(ValueError, match="figures="):
        _outputs(color_dataset, tmp_path / "x", "later")
