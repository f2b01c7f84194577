"""Figures of a run: each writes a real, non-blank PNG atomically, for awkward inputs too."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib import _pylab_helpers, colormaps
from matplotlib.figure import Figure
from PIL import Image

from heron.interpret import plots
from heron.interpret.plots import (
    plot_class_balance,
    plot_confusion,
    plot_history,
    plot_lr_find,
    plot_top_losses,
)


def _png(path) -> np.ndarray:
    """Open `path` as a PNG, check it is sane and not blank, return (H, W, 3) pixels."""
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.verify()
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB"))
    h, w, _ = pixels.shape
    assert 200 <= w <= 4000 and 150 <= h <= 4000, (w, h)
    assert pixels.std() > 0
    return pixels


def _has_colour(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 6) -> int:
    """Number of pixels within `tol` of `rgb` on every channel."""
    return int((np.abs(pixels.astype(int) - np.array(rgb)).max(axis=-1) <= tol).sum())


def _hex(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def _only(folder, name):
    """The folder holds exactly `name`: no temp file was left behind."""
    assert sorted(p.name for p in folder.iterdir()) == [name]


def _records(phases=("head",) * 3 + ("finetune",) * 4):
    rows = []
    for i, phase in enumerate(phases):
        rows.append({"phase": phase, "epoch": i, "train_loss": 1.0 / (i + 1), "valid_loss": 1.1 / (i + 1),
                     "valid_accuracy": 0.6 + 0.04 * i, "seconds": 2.0, "lr": 1e-3})
    return rows


# ---------------------------------------------------------------- history


def test_history_two_phases_with_missing_values(tmp_path):
    rows = _records()
    rows[2]["valid_loss"] = None
    rows[4]["valid_accuracy"] = None
    out = plot_history(rows, tmp_path / "history.png")
    assert out == tmp_path / "history.png"
    pixels = _png(out)
    # both phases are shaded, each in its own colour
    assert _has_colour(pixels, _hex(plots._PHASE_COLORS[0]), tol=2) > 1000
    assert _has_colour(pixels, _hex(plots._PHASE_COLORS[1]), tol=2) > 1000
    _only(tmp_path, "history.png")


def test_history_single_phase_has_no_second_shade(tmp_path):
    pixels = _png(plot_history(_records(("head",) * 4), tmp_path / "h.png"))
    assert _has_colour(pixels, _hex(plots._PHASE_COLORS[0]), tol=2) > 1000
    assert _has_colour(pixels, _hex(plots._PHASE_COLORS[1]), tol=2) == 0


def test_history_single_epoch_and_no_validation(tmp_path):
    _png(plot_history(_records(("head",)), tmp_path / "one.png"))
    rows = [{k: (None if k.startswith("valid") else v) for k, v in r.items()} for r in _records()]
    _png(plot_history(rows, tmp_path / "novalid.png"))
    _png(plot_history([], tmp_path / "empty.png"))


def test_history_leaves_no_pyplot_figures(tmp_path):
    before = _pylab_helpers.Gcf.get_num_fig_managers()
    plot_history(_records(), tmp_path / "h.png")
    plot_confusion(np.eye(3), ["a", "b", "c"], tmp_path / "c.png")
    assert _pylab_helpers.Gcf.get_num_fig_managers() == before


# ---------------------------------------------------------------- confusion


def test_confusion_two_and_thirty_classes(tmp_path):
    rng = np.random.default_rng(0)
    small = _png(plot_confusion(np.array([[40, 3], [5, 52]]), ["cat", "dog"], tmp_path / "c2.png"))
    m = rng.integers(0, 5, (30, 30)) + np.diag(rng.integers(20, 60, 30))
    names = [f"class_{i}" for i in range(30)]
    large = _png(plot_confusion(m, names, tmp_path / "c30.png"))
    # the figure grows with the number of classes so labels stay readable
    assert large.shape[0] > small.shape[0] and large.shape[1] > small.shape[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c2.png", "c30.png"]


def test_confusion_colours_follow_row_normalisation(tmp_path):
    # row "a": 10 of 10 right; row "b": 500/500 split. Normalised, only cell (a, a) is full;
    # raw counts, both cells of row "b" are full and (a, a) is nearly white.
    m = np.array([[10, 0], [500, 500]])
    full = tuple(int(round(255 * c)) for c in colormaps["Blues"](1.0)[:3])
    normed = _has_colour(_png(plot_confusion(m, ["a", "b"], tmp_path / "n.png")), full, tol=3)
    raw = _has_colour(_png(plot_confusion(m, ["a", "b"], tmp_path / "r.png", normalize=False)), full, tol=3)
    assert normed > 2000
    assert raw > 1.6 * normed


def test_confusion_odd_class_names_and_shape_check(tmp_path):
    names = [r"$\notacommand$", "cost $5", "<script>alert(1)</script>", "x" * 80]
    _png(plot_confusion(np.arange(16).reshape(4, 4), names, tmp_path / "odd.png"))
    with pytest.raises(ValueError, match="4 classes"):
        plot_confusion(np.ones((3, 3)), names, tmp_path / "bad.png")


# ---------------------------------------------------------------- top losses


def test_to_hwc_uint8_layouts():
    hwc = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    chw = hwc.transpose(2, 0, 1).copy()
    assert np.array_equal(plots._to_hwc_uint8(hwc), hwc)
    assert np.array_equal(plots._to_hwc_uint8(chw), hwc)
    assert np.array_equal(plots._to_hwc_uint8(torch.from_numpy(chw)), hwc)
    assert np.array_equal(plots._to_hwc_uint8(torch.from_numpy(hwc)), hwc)
    floats = torch.from_numpy(chw).float() / 255  # (3, H, W) in [0, 1]
    assert np.abs(plots._to_hwc_uint8(floats).astype(int) - hwc).max() <= 1
    grey = plots._to_hwc_uint8(hwc[:, :, 0])
    assert grey.shape == (5, 7, 3) and np.array_equal(grey[:, :, 2], hwc[:, :, 0])
    with pytest.raises(ValueError, match="shape"):
        plots._to_hwc_uint8(np.zeros((2, 5, 7, 3), np.uint8))


def _solid(rgb, layout, size=(40, 56)):
    img = np.empty((*size, 3), np.uint8)
    img[:] = rgb
    if layout == "chw":
        return img.transpose(2, 0, 1).copy()
    if layout == "tensor_chw":
        return torch.from_numpy(img.transpose(2, 0, 1).copy())
    if layout == "tensor_hwc":
        return torch.from_numpy(img)
    return img


def test_top_losses_mixed_layouts_show_true_colours(tmp_path):
    colours = [(250, 200, 0), (0, 180, 250), (120, 0, 200), (0, 130, 60), (200, 90, 150)]
    layouts = ["chw", "hwc", "tensor_chw", "tensor_hwc", "hwc"]
    items = [{"image": _solid(c, lay), "label": "cat", "pred": "dog" if i % 2 else "cat",
              "prob": 0.9 - 0.1 * i, "loss": 3.0 - 0.5 * i, "name": f"/data/valid/cat/img_{i}.jpg"}
             for i, (c, lay) in enumerate(zip(colours, layouts))]
    pixels = _png(plot_top_losses(items, tmp_path / "top.png", ncols=3))
    for c in colours:  # every tile shows its own colour, whatever its layout was
        assert _has_colour(pixels, c, tol=2) > 500, c
    # wrong predictions are titled in red, right ones are not
    assert _has_colour(pixels, _hex(plots._WRONG_COLOR), tol=40) > 0
    _only(tmp_path, "top.png")


def test_top_losses_all_right_has_no_red_title(tmp_path):
    items = [{"image": _solid((0, 0, 250), "hwc"), "label": "a", "pred": "a", "prob": 0.5, "loss": 0.7,
              "name": "a.jpg"}]
    pixels = _png(plot_top_losses(items, tmp_path / "top.png"))
    assert _has_colour(pixels, _hex(plots._WRONG_COLOR), tol=40) == 0
    _png(plot_top_losses([], tmp_path / "none.png"))


# ---------------------------------------------------------------- lr finder


def _lr_curve():
    lrs = np.logspace(-7, 0, 80)
    x = np.log10(lrs)
    losses = 2.3 - 1.4 / (1 + np.exp(-2 * (x + 4))) + np.where(x > -1.5, np.exp(3 * (x + 1.5)) - 1, 0)
    return lrs, losses


def test_lr_find_marks_the_suggestion(tmp_path):
    lrs, losses = _lr_curve()
    marked = _png(plot_lr_find(lrs, losses, 3e-3, tmp_path / "lr.png"))
    plain = _png(plot_lr_find(list(lrs), list(losses), None, tmp_path / "plain.png"))
    red = _hex(plots._WRONG_COLOR)
    assert _has_colour(marked, red, tol=10) > 50
    assert _has_colour(plain, red, tol=10) == 0


def test_lr_find_skips_nan_and_checks_lengths(tmp_path):
    lrs, losses = _lr_curve()
    losses[-5:] = np.nan
    losses[-1] = np.inf
    _png(plot_lr_find(lrs, losses, 1e-3, tmp_path / "nan.png"))
    _png(plot_lr_find([], [], None, tmp_path / "empty.png"))
    with pytest.raises(ValueError, match="learning rates"):
        plot_lr_find(lrs[:3], losses, None, tmp_path / "bad.png")


# ---------------------------------------------------------------- class balance


def test_class_balance_grouped_bars(tmp_path):
    counts = {"cat": {"train": 120, "valid": 30}, "dog": {"train": 98, "valid": 25},
              "bird": {"train": 40, "valid": 10, "test": 5}}
    pixels = _png(plot_class_balance(counts, tmp_path / "bal.png"))
    # one colour per split, in order of first appearance
    assert _has_colour(pixels, _hex(plots._TRAIN_COLOR), tol=2) > 2000
    assert _has_colour(pixels, _hex(plots._VALID_COLOR), tol=2) > 500
    assert _has_colour(pixels, (0x2C, 0xA0, 0x2C), tol=2) > 20
    _only(tmp_path, "bal.png")


def test_class_balance_many_classes_and_empty(tmp_path):
    counts = {f"species_{i}": {"train": 20 + i, "valid": 5 + i % 7} for i in range(40)}
    wide = _png(plot_class_balance(counts, tmp_path / "many.png"))
    few = _png(plot_class_balance({"a": {"train": 3}}, tmp_path / "few.png"))
    assert wide.shape[1] > few.shape[1]
    _png(plot_class_balance({}, tmp_path / "empty.png"))


# ---------------------------------------------------------------- atomic writes


def test_failed_save_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = plot_class_balance({"a": {"train": 3}}, tmp_path / "bal.png")
    before = target.read_bytes()

    def broken(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_class_balance({"b": {"train": 9}}, target)
    assert target.read_bytes() == before
    _only(tmp_path, "bal.png")


def test_creates_missing_parent_folder(tmp_path):
    out = plot_history(_records(), tmp_path / "run" / "figs" / "h.png")
    _png(out)
