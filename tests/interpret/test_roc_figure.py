"""The verification ROC figure: a real PNG, written atomically, marking the points it says it marks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from heron.interpret import roc_figure
from heron.interpret.roc_figure import save_roc_figure, tar_at
from heron.tasks.faces import verification

OPERATING_RGB = np.array([0xC6, 0x28, 0x28])  # the operating point's colour


def _curve() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    same = rng.random(4000) < 0.2
    d = np.where(same, rng.normal(0.6, 0.2, 4000), rng.normal(1.3, 0.2, 4000))
    c = verification.roc(d, same)
    return d, same, c


def _pixels_near(path, rgb, tolerance=12) -> int:
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(image - rgb).max(axis=-1) <= tolerance).sum())


def test_figure_is_a_png_that_marks_the_operating_point(tmp_path):
    d, same, c = _curve()
    plain = save_roc_figure(tmp_path / "plain.png", c["far"], c["tar"], title="faces $x$")
    marked = save_roc_figure(tmp_path / "roc.png", c["far"], c["tar"], tau_far=1e-2, tau=0.9)
    with Image.open(marked) as image:
        assert image.format == "PNG" and image.width > 500 and image.height > 400
    assert _pixels_near(marked, OPERATING_RGB) > 100  # the red star and its guides
    assert _pixels_near(plain, OPERATING_RGB) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.png", "roc.png"]  # no temp files left


def test_tar_at_agrees_with_tar_at_far():
    d, same, c = _curve()
    for far in (0.0, 1e-3, 1e-2, 0.05, 0.5, 1.0):
        assert tar_at(c["far"], c["tar"], far) == pytest.approx(verification.tar_at_far(d, same, far))
    assert np.isnan(tar_at([0.1, 1.0], [0.5, 1.0], 0.01))


def test_a_failed_write_keeps_the_old_figure(tmp_path, monkeypatch):
    _, _, c = _curve()
    path = save_roc_figure(tmp_path / "roc.png", c["far"], c["tar"])
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(roc_figure.Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        save_roc_figure(path, c["far"], c["tar"], tau_far=1e-3)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["roc.png"]


def test_bad_and_empty_curves(tmp_path):
    with pytest.raises(ValueError, match="3 false accept rates for 2"):
        save_roc_figure(tmp_path / "x.png", [0, 0.5, 1], [0, 1])
    assert save_roc_figure(tmp_path / "empty.png", [], []).stat().st_size > 0
