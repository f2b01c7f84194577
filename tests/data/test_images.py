"""load_image on every format and mode a user is likely to have, and every way a file can be bad."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile

from heron.data.images import (
    IMAGE_EXTENSIONS,
    find_images,
    is_image_file,
    load_image,
    try_load_image,
)
from heron.errors import DataError, ImageError

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _save(tmp_path, name, img, **kwargs):
    path = tmp_path / name
    img.save(path, **kwargs)
    return path


def _pixel(t, y, x):
    return tuple(int(v) for v in t[:, y, x])


def _quadrants():
    """8x6 RGB: left half red, right half blue, bottom-right 2x2 green."""
    a = np.zeros((6, 8, 3), np.uint8)  # (H, W, 3)
    a[:, :4] = RED
    a[:, 4:] = BLUE
    a[4:, 6:] = GREEN
    return a


# ------------------------------------------------------------------ formats


@pytest.mark.parametrize(
    "name, kwargs",
    [("x.png", {}), ("x.bmp", {}), ("x.tif", {}), ("x.tiff", {"compression": "tiff_lzw"}),
     ("x.webp", {"lossless": True}), ("x.gif", {}), ("x.ppm", {})],
)
def test_lossless_formats_round_trip_exactly(tmp_path, name, kwargs):
    a = _quadrants()
    t = load_image(_save(tmp_path, name, Image.fromarray(a), **kwargs))
    assert t.dtype == torch.uint8 and t.shape == (3, 6, 8) and t.is_contiguous()
    assert torch.equal(t, torch.from_numpy(a).permute(2, 0, 1))


@pytest.mark.parametrize("name", ["x.jpg", "x.JPEG", "x.webp"])
def test_lossy_formats_close(tmp_path, name):
    a = np.full((16, 16, 3), (200, 40, 90), np.uint8)
    t = load_image(_save(tmp_path, name, Image.fromarray(a), quality=95))
    assert t.shape == (3, 16, 16)
    assert (t.int() - torch.tensor([200, 40, 90]).view(3, 1, 1)).abs().max() <= 4


def test_gif_first_frame_of_animation(tmp_path):
    frames = [Image.new("RGB", (5, 5), RED), Image.new("RGB", (5, 5), BLUE)]
    path = _save(tmp_path, "anim.gif", frames[0], save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(path).n_frames == 2
    assert _pixel(load_image(path), 2, 2) == RED


def test_tiff_first_page(tmp_path):
    pages = [Image.new("RGB", (5, 5), GREEN), Image.new("RGB", (5, 5), RED)]
    path = _save(tmp_path, "pages.tif", pages[0], save_all=True, append_images=pages[1:])
    assert _pixel(load_image(path), 0, 0) == GREEN


# -------------------------------------------------------------------- modes


def test_mode_1_and_L(tmp_path):
    bits = Image.new("1", (4, 2), 0)
    bits.putpixel((1, 0), 1)
    t = load_image(_save(tmp_path, "bits.png", bits))
    assert _pixel(t, 0, 1) == (255, 255, 255) and _pixel(t, 0, 0) == (0, 0, 0)
    t = load_image(_save(tmp_path, "gray.png", Image.new("L", (3, 3), 100)))
    assert _pixel(t, 1, 1) == (100, 100, 100)


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((1, 3, 4), np.uint8)
    a[0, 0] = (10, 20, 30, 0)  # fully transparent -> white
    a[0, 1] = (10, 20, 30, 255)  # opaque -> itself
    a[0, 2] = (0, 0, 0, 128)  # half black over white -> 255 * 127 / 255
    for name in ("rgba.png", "rgba.webp", "rgba.tif"):
        kwargs = {"lossless": True} if name.endswith("webp") else {}
        t = load_image(_save(tmp_path, name, Image.fromarray(a, "RGBA"), **kwargs))
        assert _pixel(t, 0, 0) == (255, 255, 255), name
        assert _pixel(t, 0, 1) == (10, 20, 30), name
        assert all(abs(v - 127) <= 1 for v in _pixel(t, 0, 2)), name


def test_la_composited_on_white(tmp_path):
    a = np.array([[[100, 0], [100, 255], [100, 128]]], np.uint8)  # (1, 3, 2)
    t = load_image(_save(tmp_path, "la.png", Image.fromarray(a, "LA")))
    assert _pixel(t, 0, 0) == (255, 255, 255)
    assert _pixel(t, 0, 1) == (100, 100, 100)
    expected = round(100 * 128 / 255 + 255 * 127 / 255)  # 177
    assert all(abs(v - expected) <= 1 for v in _pixel(t, 0, 2))


def _palette_image():
    img = Image.new("P", (3, 1))
    img.putpalette([*RED, *GREEN, *BLUE] + [0] * (256 - 3) * 3)
    img.putdata([0, 1, 2])
    return img


@pytest.mark.parametrize("name", ["p.png", "p.gif", "p.bmp"])
def test_palette_colours(tmp_path, name):
    t = load_image(_save(tmp_path, name, _palette_image()))
    assert [_pixel(t, 0, x) for x in range(3)] == [RED, GREEN, BLUE]


@pytest.mark.parametrize("name", ["pt.png", "pt.gif"])
def test_palette_transparency_is_white(tmp_path, name):
    path = _save(tmp_path, name, _palette_image(), transparency=1)
    assert Image.open(path).mode == "P" and "transparency" in Image.open(path).info
    t = load_image(path)
    assert [_pixel(t, 0, x) for x in range(3)] == [RED, (255, 255, 255), BLUE]


def test_rgb_and_gray_png_with_transparent_colour(tmp_path):
    rgb = Image.fromarray(np.array([[RED, BLUE]], np.uint8))
    t = load_image(_save(tmp_path, "trns.png", rgb, transparency=BLUE))
    assert [_pixel(t, 0, 0), _pixel(t, 0, 1)] == [RED, (255, 255, 255)]
    gray = Image.fromarray(np.array([[0, 50]], np.uint8))
    t = load_image(_save(tmp_path, "trns_l.png", gray, transparency=0))
    assert [_pixel(t, 0, 0), _pixel(t, 0, 1)] == [(255, 255, 255), (50, 50, 50)]


@pytest.mark.parametrize("name", ["cmyk.jpg", "cmyk.tif"])
def test_cmyk_to_rgb(tmp_path, name):
    img = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # no cyan, full magenta+yellow: red
    path = _save(tmp_path, name, img)
    assert Image.open(path).mode == "CMYK"
    r, g, b = _pixel(load_image(path), 4, 4)
    assert r >= 240 and g <= 15 and b <= 15


@pytest.mark.parametrize("name", ["deep.png", "deep.tif"])
def test_16_bit_gray_scaled_not_clipped(tmp_path, name):
    a = np.array([[0, 257 * 100, 65535, 1000]], np.uint16)
    path = _save(tmp_path, name, Image.fromarray(a))
    assert Image.open(path).mode.startswith("I;16")
    t = load_image(path)
    assert t[0, 0].tolist() == [0, 100, 255, round(1000 / 257)]
    assert torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])


def test_32_bit_int_and_float(tmp_path):
    as_16_bit = Image.fromarray(np.array([[0, 65535, 257 * 10]], np.int32))
    assert as_16_bit.mode == "I"
    assert load_image(_save(tmp_path, "i16.tif", as_16_bit))[0, 0].tolist() == [0, 255, 10]
    wide = Image.fromarray(np.array([[-50, 0, 205, 70000]], np.int32))  # own min..max -> 0..255
    expected = [round((v + 50) * 255 / 70050) for v in (-50, 0, 205, 70000)]
    assert load_image(_save(tmp_path, "wide.tif", wide))[0, 0].tolist() == expected
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert unit.mode == "F"
    assert load_image(_save(tmp_path, "unit.tif", unit))[0, 0].tolist() == [0, 128, 255]


# --------------------------------------------------------------------- EXIF


def _jpeg_with_orientation(tmp_path, a, orientation, name="o.jpg"):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(tmp_path, name, Image.fromarray(a), exif=exif, quality=95)


def test_exif_orientation_6_rotates_clockwise(tmp_path):
    a = np.zeros((16, 32, 3), np.uint8)  # stored 32 wide, 16 high
    a[:, :16] = RED
    a[:, 16:] = BLUE
    t = load_image(_jpeg_with_orientation(tmp_path, a, 6))
    assert t.shape == (3, 32, 16)  # upright: 16 wide, 32 high
    reference = torch.rot90(torch.from_numpy(a).permute(2, 0, 1), k=-1, dims=(1, 2))  # 90 deg clockwise
    assert (t.int() - reference.int()).abs().float().mean() < 4
    r, _, b = _pixel(t, 4, 8)
    assert r > 200 and b < 50  # the stored left (red) half is now on top


def test_exif_orientation_1_keeps_shape(tmp_path):
    t = load_image(_jpeg_with_orientation(tmp_path, np.zeros((16, 32, 3), np.uint8), 1))
    assert t.shape == (3, 16, 32)


# ------------------------------------------------------------- draft (JPEG)


def _photo(width, height):
    y, x = np.mgrid[0:height, 0:width]
    a = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=2)
    return a.astype(np.uint8)  # smooth, so a reduced decode looks like a resize


def test_min_size_decodes_jpeg_smaller_but_large_enough(tmp_path):
    path = _save(tmp_path, "big.jpg", Image.fromarray(_photo(256, 192)), quality=95)
    full = load_image(path)
    assert full.shape == (3, 192, 256)
    small = load_image(path, min_size=40)  # scale min(256 // 40, 192 // 40) = 4 -> 1/4
    assert small.shape == (3, 48, 64)
    assert load_image(path, min_size=(90, 60)).shape == (3, 96, 128)  # (h, w): 1/2
    assert load_image(path, min_size=(150, 10)).shape == (3, 192, 256)  # height needs full size
    assert load_image(path, min_size=1000).shape == (3, 192, 256)  # never upscales
    reference = F.interpolate(full[None].float(), size=(48, 64), mode="area")[0]
    assert (small.float() - reference).abs().mean() < 3


def test_min_size_follows_exif_orientation(tmp_path):
    path = _jpeg_with_orientation(tmp_path, _photo(256, 128), 6)  # upright: 128 wide, 256 high
    t = load_image(path, min_size=(64, 32))
    assert t.shape == (3, 64, 32)


def test_min_size_ignored_for_png(tmp_path):
    path = _save(tmp_path, "big.png", Image.fromarray(_photo(64, 48)))
    assert load_image(path, min_size=8).shape == (3, 48, 64)


# ---------------------------------------------------------------- bad files


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="not found") as err:
        load_image(tmp_path / "nope.jpg")
    assert "nope.jpg" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.jpg: file is empty"):
        load_image(path)


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are my notes, not a photo\n")
    with pytest.raises(ImageError, match=r"notes\.jpg: not an image"):
        load_image(path)


@pytest.mark.parametrize("name", ["cut.jpg", "cut.png"])
def test_truncated_file(tmp_path, name):
    rng = np.random.default_rng(0)
    whole = _save(tmp_path, "whole" + name[3:], Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    data = whole.read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=name.replace(".", r"\.") + ".*(truncated|corrupt)"):
        load_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # not switched on globally
    assert load_image(whole).shape == (3, 64, 64)


def test_pixel_limit_checked_before_decoding(tmp_path):
    path = _save(tmp_path, "wide.png", Image.new("RGB", (20, 20), RED))
    assert load_image(path, max_pixels=400).shape == (3, 20, 20)
    with pytest.raises(ImageError, match="400 pixels is over the limit of 399"):
        load_image(path, max_pixels=399)
    # a truncated file over the limit reports the limit: the header was enough
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = _save(tmp_path, "full.jpg", Image.fromarray(noise)).read_bytes()
    cut = tmp_path / "cut_big.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="over the limit"):
        load_image(cut, max_pixels=100)


def test_pillow_bomb_limit_becomes_image_error(tmp_path, monkeypatch):
    path = _save(tmp_path, "bomb.png", Image.new("RGB", (20, 20), RED))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)  # 400 > 2 * 150: Pillow refuses to open
    with pytest.raises(ImageError, match="bomb.png: over Pillow's pixel limit"):
        load_image(path, max_pixels=None)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 400 in (300, 600]: Pillow only warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(path, max_pixels=None).shape == (3, 20, 20)


def test_try_load_image(tmp_path):
    good = _save(tmp_path, "good.png", Image.new("RGB", (3, 2), GREEN))
    image, error = try_load_image(good)
    assert error is None and image.shape == (3, 2, 3)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    image, error = try_load_image(bad)
    assert image is None and "bad.png" in error


# ------------------------------------------------------------------ listing


def test_is_image_file_by_extension():
    for ext in (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"):
        assert ext in IMAGE_EXTENSIONS
        assert is_image_file("a" + ext) and is_image_file("A" + ext.upper())
    assert not is_image_file("notes.txt") and not is_image_file("jpg")


def test_find_images_sorted_skips_hidden_and_other_files(tmp_path):
    for rel in ["b.jpg", "a.PNG", "sub/c.webp", "sub/deep/d.tif", "notes.txt", ".hidden.jpg",
                ".ipynb_checkpoints/e.jpg", "sub/.cache/f.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")  # never decoded
    found = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert found == ["a.PNG", "b.jpg", "sub/c.webp", "sub/deep/d.tif"]
    flat = [p.name for p in find_images(tmp_path, recursive=False)]
    assert flat == ["a.PNG", "b.jpg"]
    with pytest.raises(DataError, match="not found"):
        find_images(tmp_path / "missing")
