"""heron leakage: metadata that predicts the label, cross-split duplicates, and the graded verdict.

Every dataset here is written by the test: small smooth random pictures whose
content is independent of the label, with a label planted (or not) in the
image size, the EXIF camera model, or copies across the split.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from heron.cli import main
from heron.data.folders import discover
from heron.data.metadata import hamming, image_phash, pixel_stats, scan_headers, scan_metadata
from heron.interpret.leakage import (
    NEAR_DUPLICATE_BITS, binomial_pvalue, find_leakage, grade_signal, near_duplicates, write_leakage,
)


def _picture(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A photo-like random picture: an 8x8 grid of random colours, upsampled, with a little noise.

    (A smoother one, say 4x4, has almost nothing in the frequencies the hash
    compares, so a few of its bits flip on any re-encoding; photos do not.)
    """
    grid = Image.fromarray(rng.uniform(0, 255, (8, 8, 3)).astype(np.uint8))
    smooth = np.asarray(grid.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64)
    return Image.fromarray(np.clip(smooth + rng.normal(0, 4, smooth.shape), 0, 255).astype(np.uint8))


def _write(folder: Path, name: str, img: Image.Image, model: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if model is None:
        img.save(path, quality=90)
    else:
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = "Heron", model  # Make, Model
        img.save(path, quality=90, exif=exif.tobytes())
    return path


def _dataset(root: Path, per_class: dict[str, tuple[int, int]], size=None, model=None, seed: int = 0) -> Path:
    """root/{train,valid}/<class>/*.jpg; `size(rng, cls, i, n)` and `model(cls)` plant what they return."""
    rng = np.random.default_rng(seed)
    for split, index in (("train", 0), ("valid", 1)):
        for cls, counts in per_class.items():
            n = counts[index]
            for i in range(n):
                w, h = size(rng, cls, i, n) if size else tuple(rng.choice([24, 32, 40], 2))
                _write(root / split / cls, f"{cls}_{i}.jpg", _picture(rng, int(w), int(h)),
                       model(cls) if model else None)
    return root


def _signal(report, feature: str):
    return next(s for s in report.signals if s.feature == feature)


_BALANCED = {"a": (30, 15), "b": (30, 15), "c": (30, 15)}


# --------------------------------------------------------------- building blocks


def test_phash_is_stable_under_resizing_and_reencoding_and_differs_between_pictures():
    rng = np.random.default_rng(1)
    pictures = [_picture(rng, 96, 72) for _ in range(12)]
    hashes = [image_phash(np.asarray(p)) for p in pictures]
    for picture, h in zip(pictures, hashes):
        buf = io.BytesIO()
        picture.resize((64, 48), Image.Resampling.BILINEAR).save(buf, "JPEG", quality=60)
        again = image_phash(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
        assert hamming(h, again) <= NEAR_DUPLICATE_BITS
    distances = [hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1:]]
    assert min(distances) > 2 * NEAR_DUPLICATE_BITS
    assert image_phash(np.full((20, 20, 3), 128, np.uint8)) is None  # a flat image has nothing to hash


@pytest.mark.parametrize("k,n,p", [(0, 10, 0.5), (7, 10, 0.5), (30, 40, 1 / 3), (61, 100, 0.5), (5, 5, 0.9)])
def test_binomial_pvalue_equals_scipy_binomtest(k, n, p):
    from scipy.stats import binomtest

    assert binomial_pvalue(k, n, p) == pytest.approx(binomtest(k, n, p, alternative="greater").pvalue, rel=1e-9)


def test_band_index_finds_exactly_the_pairs_a_brute_force_search_finds():
    rng = np.random.default_rng(2)
    train = [int(v) for v in rng.integers(0, 2**63, 400, dtype=np.int64)]
    valid = [int(v) for v in rng.integers(0, 2**63, 300, dtype=np.int64)]
    for j in range(0, 300, 3):  # a near copy of a train hash, 0..7 bits flipped
        flips = rng.choice(64, size=j % 8, replace=False)
        valid[j] = train[j] ^ sum(1 << int(b) for b in flips)
    valid[1] = None
    found = near_duplicates(train, valid, max_bits=7)
    brute = {}
    for j, v in enumerate(valid):
        if v is not None:
            bits, i = min((hamming(t, v), i) for i, t in enumerate(train))
            if bits <= 7:
                brute[j] = bits
    assert {j: bits for j, (_, bits) in found.items()} == brute
    assert len(brute) >= 100


def test_grades_keep_strong_for_metadata_that_rivals_the_image_model():
    assert grade_signal(0.60, 0.5, 1e-4, image_accuracy=0.95) == "weak"  # a camera signal on a 50/50 set
    assert grade_signal(0.60, 0.5, 1e-4, image_accuracy=0.62) == "weak"  # a poor image model does not make it strong
    assert grade_signal(0.70, 0.5, 1e-4, image_accuracy=0.72) == "strong"  # rivals the image model
    assert grade_signal(0.90, 0.5, 1e-4, image_accuracy=0.99) == "strong"  # removes 80% of chance's errors
    assert grade_signal(0.90, 0.5, 0.02, image_accuracy=0.99) == "none"  # not significant after correction
    assert grade_signal(0.80, 0.5, 1e-4, image_accuracy=None) == "weak"


def test_header_scan_decodes_no_pixels_and_a_truncated_file_fails_only_the_pixel_pass(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0132], exif[0x0112] = "Canon", "Canon EOS 5D", "2019:05:01 12:30:00", 6
    photo = tmp_path / "photo.jpg"
    _picture(rng, 60, 40).save(photo, quality=90, exif=exif.tobytes())
    png = tmp_path / "flat.png"
    _picture(rng, 30, 20).convert("L").save(png)
    whole = photo.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[: whole.index(b"\xff\xda") + 40])  # the header, then a little of the pixel data
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image at all")

    def no_decoding(self):
        raise AssertionError("the header scan decoded pixels")

    with monkeypatch.context() as patch:
        patch.setattr(ImageFile.ImageFile, "load", no_decoding)
        meta, flat, half, bad = scan_headers([photo, png, cut, junk])
    assert (meta.width, meta.height) == (40, 60)  # upright: orientation 6 turns it sideways
    assert (meta.format, meta.mode, meta.camera, meta.file_size) == ("JPEG", "RGB", "Canon EOS 5D", len(whole))
    assert meta.taken_at == pytest.approx(1556713800.0) and meta.jpeg_quality == pytest.approx(90, abs=2)
    assert "exif" in meta.blocks
    assert (flat.format, flat.mode, flat.width, flat.camera, flat.error) == ("PNG", "L", 30, None, None)
    assert half.error is None and (half.width, half.height) == (40, 60)
    assert bad.error and "junk.jpg" in bad.error

    metas = scan_metadata([photo, png, cut, junk], workers=0)
    assert metas[2].error is None and "cut.jpg" in metas[2].pixel_error and metas[2].phash is None
    assert metas[0].pixel_error is None and metas[0].phash is not None and len(metas[0].mean_rgb) == 3
    assert metas[3].pixel_error is None and metas[3].phash is None  # never reached the pixel pass
    index, _, _, digest, error = next(pixel_stats([photo], workers=0))
    assert (index, error) == (0, None) and digest == hashlib.blake2b(photo.read_bytes(), digest_size=16).hexdigest()


# ------------------------------------------------------------------- plants


def test_label_planted_in_image_size_is_found_named_and_strong(tmp_path):
    sides = {"a": 24, "b": 32, "c": 40}
    root = _dataset(tmp_path / "sized", _BALANCED, size=lambda rng, cls, i, n: (sides[cls], sides[cls]))
    report = find_leakage(discover(root), image_accuracy=0.9, workers=0)
    for feature in ("width", "height", "size"):
        assert _signal(report, feature).grade == "strong"
        assert _signal(report, feature).accuracy == 1.0
    assert report.verdict == "strong"
    assert any(r.finding == "all 45 images with size 24x24 are class a" for r in report.concentrations)
    assert "width" in report.reasons[0] and "size" in report.reasons[0]


def test_label_planted_in_exif_camera_model_is_found_named_and_strong(tmp_path):
    cameras = {"a": "Alpha-100", "b": "Bravo-200", "c": "Delta-300"}
    root = _dataset(tmp_path / "exif", _BALANCED, model=lambda cls: cameras[cls], seed=4)
    report = find_leakage(discover(root), image_accuracy=0.9, workers=0)
    assert _signal(report, "camera").grade == "strong"
    assert _signal(report, "width").grade == "none" and _signal(report, "size").grade == "none"
    assert report.verdict == "strong"
    assert any(r.feature == "camera" and r.value == "Heron Bravo-200" and r.share == 1.0
               for r in report.concentrations)
    assert "camera" in report.reasons[0]


def test_cross_split_copies_and_near_duplicates_are_listed_and_strong(tmp_path):
    root = _dataset(tmp_path / "dups", _BALANCED, seed=5)
    copies = [("a", 0), ("a", 1), ("b", 2), ("c", 3)]
    for cls, i in copies:
        shutil.copy(root / "train" / cls / f"{cls}_{i}.jpg", root / "valid" / cls / f"copy_{i}.jpg")
    source = Image.open(root / "train" / "b" / "b_7.jpg")
    source.resize((source.width + 9, source.height + 9)).save(root / "valid" / "b" / "near.jpg", quality=70)
    report = find_leakage(discover(root), image_accuracy=0.9, workers=0)
    found = {(Path(d.valid).name, Path(d.train).name): d for d in report.duplicates}
    assert set(found) == {(f"copy_{i}.jpg", f"{cls}_{i}.jpg") for cls, i in copies} | {("near.jpg", "b_7.jpg")}
    assert all(d.identical and d.bits == 0 for k, d in found.items() if k[0] != "near.jpg")
    near = found[("near.jpg", "b_7.jpg")]
    assert not near.identical and 0 <= near.bits <= NEAR_DUPLICATE_BITS and near.same_label
    assert report.duplicate_grade == "strong" and report.verdict == "strong"
    assert all(s.grade in ("none", "n/a") for s in report.signals)


def test_no_plant_gives_verdict_none(tmp_path):
    root = _dataset(tmp_path / "clean", _BALANCED, seed=6)
    report = find_leakage(discover(root), image_accuracy=0.9, workers=0)
    assert report.verdict == "none", report.reasons
    assert report.duplicates == [] and report.tests >= 8
    assert report.reasons[0].startswith("none: no feature beats chance")


def test_a_weak_planted_size_correlation_is_graded_weak(tmp_path):
    def size(rng, cls, i, n):  # 65% of class a and 25% of class b are 40x40; the rest one of four sizes
        if i < round(n * (0.65 if cls == "a" else 0.25)):
            return 40, 40
        return tuple(rng.choice([24, 32], 2))

    root = _dataset(tmp_path / "weak", {"a": (100, 50), "b": (100, 50)}, size=size, seed=7)
    report = find_leakage(discover(root), image_accuracy=0.92, workers=0)
    assert _signal(report, "size").grade == "weak"
    assert 0.6 <= _signal(report, "size").accuracy <= 0.8
    assert report.verdict == "weak", report.reasons
    assert not any(s.grade == "strong" for s in report.signals)
    assert any(r.feature == "size" and r.value == "40x40" and r.label == "a" for r in report.concentrations)


# ------------------------------------------------------------------ outputs


def test_cli_writes_json_and_html_and_ends_with_the_verdict(tmp_path, capsys):
    root = _dataset(tmp_path / "dups", _BALANCED, seed=8)
    for i in range(3):
        shutil.copy(root / "train" / "c" / f"c_{i}.jpg", root / "valid" / "c" / f"copy_{i}.jpg")
    (root / "valid" / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"result": {"metrics": {"accuracy": 0.875}}}))
    out = tmp_path / "out"
    code = main(["leakage", str(root), "-o", str(out), "--run", str(run), "--workers", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and lines[-1] == "verdict: strong"
    assert any(line.startswith("width ") for line in lines) and any("not tested" in line for line in lines) and "image model 87.5%" in lines[1]
    saved = json.loads((out / "leakage.json").read_text())
    assert saved["verdict"] == "strong" and saved["image_accuracy"] == 0.875
    assert len(saved["duplicates"]) == 3 and any("broken.jpg" in s for s in saved["skipped"])
    page = (out / "leakage.html").read_text()
    assert "copy_0.jpg" in page and "broken.jpg" in page and "data:image/jpeg;base64," in page


def test_cli_without_image_model_says_so_and_quiet_prints_only_the_verdict(tmp_path, capsys):
    root = _dataset(tmp_path / "clean", {"a": (12, 6), "b": (12, 6)}, seed=9)
    assert main(["leakage", str(root), "-o", str(tmp_path / "o"), "--no-image-model", "--quiet"]) == 0
    assert capsys.readouterr().out == "verdict: none\n"
    saved = json.loads((tmp_path / "o" / "leakage.json").read_text())
    assert saved["image_accuracy"] is None and "no image model" in saved["reasons"][-1]


def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys):
    root = _dataset(tmp_path / "clean", {"a": (4, 2), "b": (4, 2)}, seed=11)
    assert main(["leakage", str(tmp_path / "missing"), "-o", str(tmp_path / "o"), "--no-image-model"]) == 2
    assert main(["leakage", str(root), "--run", str(tmp_path / "norun"), "-o", str(tmp_path / "o")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("heron: error: ") for e in errors)


def test_write_leakage_replaces_earlier_files(tmp_path):
    root = _dataset(tmp_path / "clean", {"a": (12, 6), "b": (12, 6)}, seed=10)
    report = find_leakage(discover(root), workers=0, pixels=False)
    json_path, html_path = write_leakage(report, tmp_path / "o")
    write_leakage(report, tmp_path / "o")
    assert json.loads(json_path.read_text())["pixels"] is False
    assert "Not searched" in html_path.read_text()
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["leakage.html", "leakage.json"]
