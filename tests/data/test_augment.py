"""Training augmentation: every knob, presets, PCA colour statistics and their cache, repeatability, the CLI."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
from torchvision import tv_tensors

from heron.cli import main
from heron.cli.augment import PRESET_NAMES, add_augment_flags, augment_overrides
from heron.data import augment as A
from heron.data.augment import (
    AugmentSpec,
    ColourPCA,
    SeededView,
    build_augment,
    colour_pca,
    load_or_compute_colour_pca,
    preset,
)
from heron.data.images import find_images, load_image
from heron.data.loader import ImageFiles, image_loader
from heron.data.transforms import Preprocessing, augmentation, eval_transform, tta_views
from tests.conftest import write_color_classes

PRE = Preprocessing(size=(32, 32))


def _photo(seed: int = 0, h: int = 48, w: int = 64) -> torch.Tensor:
    """A uint8 (3, h, w) image with structure everywhere: noise on a diagonal colour gradient."""
    gen = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, h)[:, None] + torch.linspace(0, 1, w)[None, :]  # (h, w)
    base = torch.stack([ramp * 100, 200 - ramp * 80, ramp * 60 + 40])  # (3, h, w)
    return (base + torch.rand(3, h, w, generator=gen) * 50).clamp(0, 255).to(torch.uint8)


def _vertical_ramp(h: int = 48, w: int = 48) -> torch.Tensor:
    """Grey, dark at the top and light at the bottom: any crop or colour jitter keeps that order."""
    rows = torch.linspace(10, 245, h)[:, None].expand(h, w)
    return rows.round().to(torch.uint8).expand(3, h, w).clone()


def _upright(img: torch.Tensor) -> bool:
    half = img.shape[-2] // 2
    return img[:, :half].float().mean() < img[:, half:].float().mean()


# ---- each knob ------------------------------------------------------------------------
KNOBS = {
    "crop_scale": (0.3, 0.6),
    "hflip": True,
    "vflip": True,
    "rotate": 20.0,
    "shear": 15.0,
    "zoom": (0.7, 0.8),
    "elastic": 40.0,
    "brightness": 0.4,
    "contrast": 0.4,
    "saturation": 0.6,
    "hue": 0.2,
    "pca_colour": 1.0,
}


@pytest.mark.parametrize("knob", list(KNOBS))
def test_each_knob_alone_keeps_shape_and_dtype_and_changes_pixels(knob):
    spec = AugmentSpec(**{"hflip": False, knob: KNOBS[knob]})
    assert spec.is_random() and spec.describe() != AugmentSpec(hflip=False).describe()
    img = _photo()
    plain = eval_transform(PRE)(img)
    transform = build_augment(spec, PRE)
    outs = [transform(img) for _ in range(6)]
    for out in outs:
        assert out.shape == (3, 32, 32) and out.dtype == torch.uint8
    assert any(not torch.equal(out, plain) for out in outs), knob


def test_vertical_flip_is_off_by_default_and_flips_when_asked():
    assert not AugmentSpec().vflip and all(not spec.vflip for spec in A.PRESETS.values())
    img = _vertical_ramp()
    for name in A.PRESETS:
        transform = augmentation(PRE, name)
        assert all(_upright(transform(img)) for _ in range(20)), name
    flipping = build_augment(preset("photo", vflip=True), PRE)
    upright = [_upright(flipping(img)) for _ in range(20)]
    assert 0 < sum(upright) < 20  # some upside down, some not


def test_photo_preset_draws_what_todays_train_transform_drew():
    before = T.Compose([
        T.RandomResizedCrop([32, 32], scale=(0.35, 1.0), interpolation=T.InterpolationMode.BILINEAR, antialias=True),
        T.RandomHorizontalFlip(),
        T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
    ])
    img = _photo()
    for seed in range(4):
        torch.manual_seed(seed)
        expected = before(img)
        torch.manual_seed(seed)
        assert torch.equal(augmentation(PRE, "photo")(img), expected)


def test_none_is_the_eval_transform_and_no_crop_is_its_resize_and_crop():
    img = _photo()
    plain = eval_transform(PRE)(img)
    assert torch.equal(augmentation(PRE, "none")(img), plain)
    mirror_or_not = build_augment(AugmentSpec(), PRE)  # eval resize + center crop, then hflip
    outs = [mirror_or_not(img) for _ in range(12)]
    assert all(torch.equal(o, plain) or torch.equal(o, plain.flip(-1)) for o in outs)
    assert any(torch.equal(o, plain.flip(-1)) for o in outs)


# ---- the spec, presets, describe ------------------------------------------------------
def test_presets_overrides_describe_and_round_trip():
    assert {"none", "light", "photo", "strong"} <= set(A.PRESETS)
    assert preset("light").crop_scale == (0.75, 1.0) and not preset("light").hflip
    strong = preset("strong")
    assert strong.rotate and strong.shear and strong.zoom and strong.pca_colour
    assert preset("photo", rotate=10, zoom=[0.9, 1.2]).zoom == (0.9, 1.2)
    assert preset("photo").describe() == "crop 0.35-1, colour 0.2"
    assert "vflip" in preset("photo", vflip=True).describe() and preset("light").describe().endswith("no hflip")
    assert preset("none").describe().startswith("none")
    for spec in list(A.PRESETS.values()) + [preset("strong", elastic=30, hue=0.1, vflip=True)]:
        assert AugmentSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError, match="none, light, photo, strong"):
        preset("heavy")
    with pytest.raises(ValueError, match="unknown augmentation settings rotation"):
        preset("photo", rotation=5)
    with pytest.raises(ValueError, match="unknown augmentation settings"):
        AugmentSpec.from_dict({"rotate": 1, "spin": 2})
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentSpec(crop_scale=(0.8, 0.5))
    with pytest.raises(ValueError, match="hue"):
        AugmentSpec(hue=0.7)
    with pytest.raises(ValueError, match="rotate"):
        AugmentSpec(rotate=-3)
    with pytest.raises(ValueError, match="none, light, photo, strong"):
        augmentation(PRE, "heavy")


# ---- PCA colour -----------------------------------------------------------------------
def _all_pixels(paths) -> np.ndarray:
    """Every pixel of every image, (N, 3) in 0..1: the all-at-once reference."""
    return np.concatenate([load_image(p).reshape(3, -1).T.numpy() / 255.0 for p in paths])


def _same_axes(a: np.ndarray, b: np.ndarray) -> bool:
    """Eigenvector columns equal up to sign."""
    return bool(np.allclose(np.abs(np.sum(a * b, axis=0)), 1.0, atol=1e-6))


def test_colour_pca_streams_to_numpy_eigh_of_the_covariance(tmp_path):
    paths = find_images(write_color_classes(tmp_path / "d", per_class=3, size=24, layout="flat"))
    values, vectors = np.linalg.eigh(np.cov(_all_pixels(paths), rowvar=False))  # ascending
    pca = colour_pca(paths, min_size=None, pixels_per_image=None)
    assert pca.images == len(paths)
    np.testing.assert_allclose(pca.eigenvalues, values[::-1], rtol=1e-9, atol=1e-12)
    assert _same_axes(np.array(pca.eigenvectors), vectors[:, ::-1])
    assert pca.eigenvalues[0] >= pca.eigenvalues[1] >= pca.eigenvalues[2]


def test_colour_pca_finds_a_known_colour_axis(tmp_path):
    from PIL import Image

    axis = np.array([0.8, 0.5, -0.33])
    axis /= np.linalg.norm(axis)
    rng = np.random.default_rng(0)
    for i in range(3):  # pixels spread along `axis`, plus a little noise
        t = rng.uniform(-0.3, 0.3, size=(20, 20, 1))
        pixels = 0.5 + t * axis + rng.normal(0, 0.01, size=(20, 20, 3))
        Image.fromarray(np.clip(pixels * 255, 0, 255).round().astype(np.uint8)).save(tmp_path / f"{i}.png")
    pca = colour_pca(sorted(tmp_path.glob("*.png")), pixels_per_image=100)
    assert abs(np.dot(np.array(pca.eigenvectors)[:, 0], axis)) > 0.999
    assert pca.eigenvalues[0] > 50 * pca.eigenvalues[1]


def test_colour_pca_cache_is_reused_and_a_damaged_file_recomputed(tmp_path, monkeypatch):
    paths = find_images(write_color_classes(tmp_path / "d", per_class=2, size=16, layout="flat"))
    calls = []
    real = A.colour_pca
    monkeypatch.setattr(A, "colour_pca", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = load_or_compute_colour_pca(paths, tmp_path / "cache")
    (file,) = (tmp_path / "cache" / "colour_pca").glob("*.json")
    assert load_or_compute_colour_pca(list(reversed(paths)), tmp_path / "cache") == first and len(calls) == 1
    for damage in ("{not json", json.dumps({"eigenvalues": [1, 2], "eigenvectors": [], "images": 1}), ""):
        file.write_text(damage)
        assert load_or_compute_colour_pca(paths, tmp_path / "cache") == first
        assert ColourPCA.from_dict(json.loads(file.read_text())) == first
    assert len(calls) == 4
    os.utime(paths[0], ns=(1, 1))  # a changed file is another dataset
    load_or_compute_colour_pca(paths, tmp_path / "cache")
    assert len(calls) == 5 and len(list((tmp_path / "cache" / "colour_pca").glob("*.json"))) == 2


def test_pca_noise_adds_eigvecs_times_alpha_times_eigvals():
    pca = ColourPCA((0.2, 0.05, 0.01), ((0.6, 0.8, 0.0), (0.8, -0.6, 0.0), (0.0, 0.0, 1.0)))
    noise = A.PCAColourNoise(0.5, pca)
    grey = torch.full((3, 4, 4), 128, dtype=torch.uint8)
    torch.manual_seed(3)
    out = noise(grey)
    torch.manual_seed(3)
    alpha = torch.randn(3) * 0.5
    offset = torch.tensor(pca.eigenvectors) @ (alpha * torch.tensor(pca.eigenvalues))  # (3,)
    expected = (128 + offset * 255).round().clamp(0, 255).to(torch.uint8)
    assert out.dtype == torch.uint8 and torch.equal(out, expected[:, None, None].expand(3, 4, 4))


def test_boxes_and_masks_pass_through_the_pca_step_unchanged():
    noise = A.PCAColourNoise(1.0)
    img = _photo()
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[2.0, 3.0, 30.0, 40.0]]), format="XYXY", canvas_size=(48, 64))
    mask = tv_tensors.Mask(torch.ones(48, 64, dtype=torch.uint8))
    for image in (tv_tensors.Image(img), img):
        out, out_boxes, out_mask = noise(image, boxes, mask)
        assert type(out) is type(image) and not torch.equal(out, img)
        assert isinstance(out_boxes, tv_tensors.BoundingBoxes) and torch.equal(out_boxes, boxes)
        assert out_boxes.format == boxes.format and out_boxes.canvas_size == boxes.canvas_size
        assert torch.equal(out_mask, mask)


def test_augmentations_pickle_for_spawned_workers():
    transform = build_augment(preset("strong", elastic=20), PRE)
    again = pickle.loads(pickle.dumps(transform))
    torch.manual_seed(1)
    expected = transform(_photo())
    torch.manual_seed(1)
    assert torch.equal(again(_photo()), expected)


# ---- repeatability ----------------------------------------------------------------------
def test_training_loader_is_bit_for_bit_repeatable_with_two_workers(tmp_path):
    root = write_color_classes(tmp_path / "d", per_class=4, size=40, layout="flat")
    items = [(p, i % 3) for i, p in enumerate(find_images(root))]
    dataset = ImageFiles(items, augmentation(PRE, "strong"), min_size=PRE.decode_min_size())

    def one_pass(seed: int) -> list:
        torch.manual_seed(seed)
        return [(x, y, idx) for x, y, idx, _ in image_loader(dataset, batch_size=4, shuffle=True, workers=2)]

    first, second, other = one_pass(0), one_pass(0), one_pass(1)
    assert len(first) == 3
    for (x1, y1, i1), (x2, y2, i2) in zip(first, second, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2) and torch.equal(i1, i2)
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(first, other))


def test_random_tta_views_are_deterministic_per_image():
    img = _photo()
    views = tta_views(PRE, "random:4")
    state = torch.get_rng_state()
    outs = [v(img) for v in views]
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is untouched
    assert len(outs) == 4 and all(o.shape == (3, 32, 32) and o.dtype == torch.uint8 for o in outs)
    assert all(torch.equal(a, v(img)) for a, v in zip(outs, tta_views(PRE, "random:4")))
    assert len({o.numpy().tobytes() for o in outs}) == 4
    assert not torch.equal(views[0](_photo(seed=1)), outs[0])
    for bad in ("random:0", "random:x", "random:", "random", "random:-2"):
        with pytest.raises(ValueError, match="random:N"):
            tta_views(PRE, bad)


def test_seeded_view_repeats_per_image_and_copy():
    augment = augmentation(PRE, "photo")
    img = _photo()
    assert torch.equal(SeededView(augment, 0)(img), SeededView(augment, 0)(img))
    assert not torch.equal(SeededView(augment, 0)(img), SeededView(augment, 1)(img))


# ---- command line -----------------------------------------------------------------------
def _parse(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser()
    add_augment_flags(parser)
    return augment_overrides(parser.parse_args(argv))


def test_flags_give_only_what_was_asked_and_fit_beside_train_flags():
    from heron.cli import train as train_cli
    from heron.config import TrainConfig

    assert PRESET_NAMES == tuple(A.PRESETS)  # the parser's copy of the names (it must not import torch)
    assert _parse([]) == {}
    overrides = _parse(["--rotate", "10", "--vflip", "--no-hflip", "--colour", "0.3", "--contrast", "0.1",
                        "--zoom", "0.2", "--crop-scale", "0.5", "1", "--pca-colour", "0.1", "--elastic", "30"])
    assert overrides == {"rotate": 10.0, "vflip": True, "hflip": False, "brightness": 0.3, "contrast": 0.1,
                         "saturation": 0.3, "zoom": pytest.approx((0.8, 1.2)), "crop_scale": (0.5, 1.0),
                         "pca_colour": 0.1, "elastic": 30.0}
    spec = preset("photo", **overrides)
    assert spec.rotate == 10 and spec.vflip and not spec.hflip
    assert _parse(["--zoom", "0"]) == {"zoom": None} and _parse(["--zoom", "0.9", "1.1"])["zoom"] == (0.9, 1.1)
    sub = argparse.ArgumentParser().add_subparsers()
    train_cli.add_parser(sub)  # with or without the augmentation flags added already
    train_own = {o for a in sub.choices["train"]._actions if not a.dest.startswith("aug_") for o in a.option_strings}
    fresh = argparse.ArgumentParser(add_help=False)
    add_augment_flags(fresh)
    ours = {o for a in fresh._actions for o in a.option_strings}
    assert ours and not ours & train_own  # no flag of train's is redefined
    assert all(a.dest.startswith("aug_") for a in fresh._actions)  # nor any TrainConfig field set by accident
    assert not any(f.name.startswith("aug_") for f in dataclasses.fields(TrainConfig))
    for bad in (["--rotate", "-1"], ["--crop-scale", "0.9", "0.2"], ["--hue", "0.9"], ["--zoom", "1", "2", "3"]):
        with pytest.raises(SystemExit):
            _parse(bad)


def test_preview_writes_a_png_grid(tmp_path, capsys):
    root = write_color_classes(tmp_path / "d", per_class=2, size=40)
    out = tmp_path / "grids" / "grid.png"
    code = main(["augment-preview", str(root), "-o", str(out), "--augment", "strong", "--n", "3", "--size", "32",
                 "--rotate", "5", "--cache-dir", str(tmp_path / "cache")])
    assert code == 0 and capsys.readouterr().out.strip() == str(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((tmp_path / "cache" / "colour_pca").glob("*.json"))  # the dataset's colour statistics
    assert main(["augment-preview", str(find_images(root)[0]), "-o", str(out), "--n", "2", "--size", "32"]) == 0


def test_preview_errors_are_one_line_and_exit_2(tmp_path, capsys):
    root = write_color_classes(tmp_path / "d", per_class=2, size=40)
    (tmp_path / "empty").mkdir()
    cases = [
        ([str(tmp_path / "missing")], "missing"),
        ([str(tmp_path / "empty")], "no images"),
        ([str(root), "--image", str(tmp_path / "gone.jpg")], "gone.jpg"),
    ]
    for argv, named in cases:
        assert main(["augment-preview", *argv, "-o", str(tmp_path / "g.png")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("heron: error:") and named in err and "\n" not in err
    assert not (tmp_path / "g.png").exists()
