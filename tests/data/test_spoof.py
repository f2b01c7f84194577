"""The synthetic recapture: what a photo of a screen or a print adds, measured on known inputs."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from heron.data.spoof import recapture, write_liveness_set


def _flat(size: int = 128, value: int = 128) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


def test_strength_zero_changes_nothing():
    rgb = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    np.testing.assert_array_equal(recapture(rgb, np.random.default_rng(1), strength=0.0), rgb)


def test_recapture_keeps_shape_and_dtype_and_is_seeded():
    rgb = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    first = recapture(rgb, np.random.default_rng(5))
    assert first.shape == rgb.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(first, recapture(rgb, np.random.default_rng(5)))
    assert not np.array_equal(first, recapture(rgb, np.random.default_rng(6)))


def _band_energy(channel: np.ndarray, low: float, high: float) -> float:
    """Mean power of the spectrum between `low` and `high` cycles per pixel (DC removed)."""
    spectrum = np.abs(np.fft.fft2(channel - channel.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(channel.shape[0]), np.fft.fftfreq(channel.shape[1]), indexing="ij")
    radius = np.hypot(fy, fx)
    return float(spectrum[(radius >= low) & (radius < high)].mean())


def test_a_flat_grey_picture_gains_moire_bands():
    """A uniform image has no texture; after recapture its centre carries periodic bands (a spectral peak)."""
    for seed in range(4):
        out = recapture(_flat(), np.random.default_rng(seed)).astype(np.float32)
        centre = out[32:96, 32:96].mean(axis=2)  # inside any bezel
        assert centre.std() > 2.0
        spectrum = np.abs(np.fft.fft2(centre - centre.mean()))
        assert spectrum.max() > 8 * np.median(spectrum)  # periodic, not noise


def test_the_frame_differs_from_the_picture_and_the_picture_is_blurred():
    """A sharp checkerboard: the recapture loses fine detail, and its border rows are not the picture."""
    y, x = np.mgrid[0:128, 0:128]
    board = np.where((x // 2 + y // 2) % 2 == 0, 230, 25).astype(np.uint8)
    rgb = np.repeat(board[..., None], 3, axis=2)
    fine_before = _band_energy(rgb[..., 1].astype(np.float32), 0.2, 0.5)
    framed = 0
    for seed in range(6):
        out = recapture(rgb, np.random.default_rng(seed))
        assert _band_energy(out[..., 1].astype(np.float32), 0.2, 0.5) < 0.5 * fine_before
        edges = np.concatenate([out[:2].reshape(-1, 3), out[-2:].reshape(-1, 3)]).astype(np.float32)
        framed += edges.std(axis=0).mean() < 0.6 * rgb[:2].std()  # a bezel or margin, not the checkerboard
    assert framed >= 3


def test_write_liveness_set_is_deterministic_and_spoofs_are_other_images(tmp_path):
    first = write_liveness_set(tmp_path / "a", per_class=4, size=32, seed=3)
    second = write_liveness_set(tmp_path / "b", per_class=4, size=32, seed=3)
    names = sorted(p.relative_to(first).as_posix() for p in first.rglob("*.png"))
    assert names == [f"live/live_{i:03d}.png" for i in range(4)] + [f"spoof/spoof_{i:03d}.png" for i in range(4)]

    def digest(path):
        return hashlib.sha256(np.asarray(Image.open(path)).tobytes()).hexdigest()

    assert [digest(first / n) for n in names] == [digest(second / n) for n in names]
    live = [np.asarray(Image.open(first / n), np.float32) for n in names if n.startswith("live")]
    spoof = [np.asarray(Image.open(first / n), np.float32) for n in names if n.startswith("spoof")]
    assert all(im.shape == (32, 32, 3) for im in live + spoof)
    distances = np.array([[np.abs(a - b).mean() for b in live] for a in spoof])
    assert distances.min() > 5  # no spoof is a recapture of a live image in the set
    other = write_liveness_set(tmp_path / "c", per_class=4, size=32, seed=4)
    assert digest(other / names[0]) != digest(first / names[0])


def test_strength_scales_the_change():
    rgb = _flat(64, 100)
    for seed in range(3):
        change = [np.abs(recapture(rgb, np.random.default_rng(seed), strength=s).astype(np.float32) - rgb).mean()
                  for s in (0.25, 1.0)]
        assert 0 < change[0] < change[1]
