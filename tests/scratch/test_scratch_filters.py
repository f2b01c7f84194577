"""Classic filters, grayscale conversion and the `heron filters` grid figure."""

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from heron.interpret.filter_grid import filter_responses, plot_filter_grid
from heron.scratch.filters import (
    CLASSIC_FILTERS,
    apply_filter,
    classic_filters,
    random_filters,
    to_grayscale,
)


def test_vertical_edge_course_example():
    image = np.array([[10, 10, 10, 0, 0, 0]] * 6, dtype=np.float64)
    out = apply_filter(image, CLASSIC_FILTERS["vertical edge"], padding="valid")
    assert out.tolist() == [[0, 30, 30, 0]] * 4
    flipped = apply_filter(image[:, ::-1], CLASSIC_FILTERS["vertical edge"], padding="valid")
    assert flipped.tolist() == [[0, -30, -30, 0]] * 4  # dark-to-light gives negative values
    assert np.all(apply_filter(image, CLASSIC_FILTERS["horizontal edge"], padding="valid") == 0)


def test_filters_are_the_course_matrices():
    f = classic_filters()
    assert f["sobel x"].tolist() == [[1, 0, -1], [2, 0, -2], [1, 0, -1]]
    assert f["scharr x"].tolist() == [[3, 0, -3], [10, 0, -10], [3, 0, -3]]
    for axis in ("sobel", "scharr"):
        assert np.array_equal(f[f"{axis} y"], f[f"{axis} x"].T)
    f["sobel x"][0, 0] = 99  # copies: the module's filters stay intact
    assert CLASSIC_FILTERS["sobel x"][0, 0] == 1
    assert set(random_filters(2, seed=3)) == {"random 1", "random 2"}


@pytest.mark.parametrize("name", sorted(CLASSIC_FILTERS))
def test_same_padding_matches_scipy_correlate(name, rel_error):
    gray = np.random.default_rng(0).random((13, 17))
    ours = apply_filter(gray, CLASSIC_FILTERS[name], padding="same")
    ref = ndimage.correlate(gray, CLASSIC_FILTERS[name], mode="constant", cval=0.0)
    assert ours.shape == gray.shape
    assert rel_error(ours, ref) <= 1e-12


def test_grayscale_matches_pillow_luma():
    rgb = np.random.default_rng(0).integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    ref = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float64) / 255
    assert np.abs(to_grayscale(rgb) - ref).max() <= 1 / 255
    assert np.array_equal(to_grayscale(rgb.transpose(2, 0, 1)), to_grayscale(rgb))  # CHW as from load_image
    with pytest.raises(ValueError):
        to_grayscale(np.zeros((4, 4, 5)))


def test_large_images_are_shrunk_before_filtering():
    gray, responses = filter_responses(np.zeros((3, 1200, 700), dtype=np.uint8), n_random=2)
    assert gray.shape == (400, 233)
    assert len(responses) == len(CLASSIC_FILTERS) + 2
    assert all(r.shape == gray.shape for _, r in responses.values())


def test_filter_grid_png(tmp_path):
    yy, xx = np.mgrid[0:96, 0:128]
    image = np.stack([((xx // 16 + yy // 16) % 2) * 255] * 3).astype(np.uint8)  # (3, 96, 128) checkerboard
    path = plot_filter_grid(image, tmp_path / "sub" / "grid.png", n_random=3)
    assert path == tmp_path / "sub" / "grid.png"
    png = np.asarray(Image.open(path).convert("L"))
    assert png.shape[0] > 200 and png.shape[1] > 400
    assert png.min() < 30 and png.max() > 225  # drawn panels, not a blank canvas
    assert not list((tmp_path / "sub").glob("*.tmp"))
