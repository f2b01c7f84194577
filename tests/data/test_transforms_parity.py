"""The evaluation transforms are torchvision's, bit for bit, without importing torchvision.

`heron.data.transforms` resizes, crops and flips with plain torch so that
scoring and feature extraction never pay torchvision's import; these tests hold
its output to `torchvision.transforms.v2.functional` on random uint8 images of
odd sizes, shrinking and enlarging, with both interpolations heron's weights use.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF

from heron.data import transforms as H
from heron.data.transforms import Preprocessing, eval_transform, tta_views

# (height, width) of the source images: odd, prime, tall, wide, tiny.
SOURCES = [(37, 53), (101, 67), (223, 331), (7, 5), (480, 97)]
# Targets that shrink, enlarge, or do both (one side up, the other down).
TARGETS = [(24, 24), (19, 31), (64, 48), (257, 129), (300, 500), (3, 2)]
MODES = ["bilinear", "bicubic"]


def _image(h: int, w: int, seed: int, layout: str = "contiguous") -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen)  # (3, H, W)
    if layout == "hwc":  # what torch.from_numpy(array).permute(2, 0, 1) gives without .contiguous()
        img = img.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    return img


def _reference_resize(img, size, mode):
    return TF.resize(img, list(size), interpolation=T.InterpolationMode(mode), antialias=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", ["contiguous", "hwc"])
def test_resize_matches_torchvision_bit_for_bit(mode, layout):
    for k, (h, w) in enumerate(SOURCES):
        img = _image(h, w, seed=k, layout=layout)
        for size in TARGETS:
            ours, ref = H.resize(img, size, mode), _reference_resize(img, size, mode)
            assert ours.dtype == ref.dtype == torch.uint8
            assert ours.shape == ref.shape == (3, *size)
            assert torch.equal(ours, ref), (mode, layout, (h, w), size)


@pytest.mark.parametrize("mode", MODES)
def test_resize_of_float_and_batched_images_matches_torchvision(mode):
    img = _image(41, 29, seed=7)
    batch = torch.stack([img, img.flip(-1)])  # (2, 3, H, W)
    for size in [(17, 13), (90, 61)]:
        assert torch.equal(H.resize(batch, size, mode), _reference_resize(batch, size, mode))
        x = img.float() / 255
        assert torch.equal(H.resize(x, size, mode), _reference_resize(x, size, mode))


def test_resize_to_the_same_size_returns_the_image():
    img = _image(12, 9, seed=1)
    assert H.resize(img, (12, 9)) is img


def test_resize_rejects_an_unknown_interpolation():
    with pytest.raises(ValueError, match="interpolation"):
        H.resize(_image(8, 8, seed=0), (4, 4), "lanczos2")


def test_crops_and_flip_match_torchvision():
    for k, (h, w) in enumerate([(37, 53), (64, 64), (31, 30), (8, 40)]):
        img = _image(h, w, seed=10 + k)
        for size in [(7, 7), (min(h, 30), min(w, 21)), (h, w), (h - 1, w - 2)]:
            assert torch.equal(H.center_crop(img, size), TF.center_crop(img, list(size)))
            ours, ref = H.five_crop(img, size), TF.five_crop(img, list(size))
            assert all(torch.equal(a, b) for a, b in zip(ours, ref, strict=True))
        # a crop larger than the image pads with zeros, as torchvision does
        for size in [(h + 3, w), (h, w + 4), (h + 5, w + 2)]:
            assert torch.equal(H.center_crop(img, size), TF.center_crop(img, list(size)))
        assert torch.equal(H.horizontal_flip(img), TF.horizontal_flip(img))
    with pytest.raises(ValueError, match="bigger than input"):
        H.five_crop(_image(10, 10, seed=0), (11, 5))


def _reference_eval(pre: Preprocessing, img: torch.Tensor) -> torch.Tensor:
    """The evaluation transform as it was written on torchvision."""
    h, w = img.shape[-2:]
    rh, rw = pre.resize_size()
    scale = max(rh / h, rw / w)
    new = [max(rh, round(h * scale)), max(rw, round(w * scale))]
    img = TF.resize(img, new, interpolation=T.InterpolationMode(pre.interpolation), antialias=True)
    return TF.center_crop(img, list(pre.size))


@pytest.mark.parametrize("mode", MODES)
def test_eval_and_tta_views_match_torchvision(mode):
    settings = [Preprocessing(size=(32, 32), crop_pct=0.875, interpolation=mode),
                Preprocessing(size=(36, 64), crop_pct=1.0, interpolation=mode),
                Preprocessing(size=(224, 224), crop_pct=0.9, interpolation=mode)]
    for pre in settings:
        for k, (h, w) in enumerate(SOURCES[:4]):
            img = _image(h, w, seed=20 + k)
            expected = _reference_eval(pre, img)
            assert torch.equal(eval_transform(pre)(img), expected)
            views = tta_views(pre, "multicrop")
            assert len(views) == 10
            assert torch.equal(views[0](img), expected)
            assert torch.equal(views[1](img), TF.horizontal_flip(expected))
            rh, rw = pre.resize_size()
            scale = max(rh / h, rw / w)
            resized = TF.resize(img, [max(rh, round(h * scale)), max(rw, round(w * scale))],
                                interpolation=T.InterpolationMode(mode), antialias=True)
            corners = TF.five_crop(resized, list(pre.size))[:4]
            for i, corner in enumerate(corners):
                assert torch.equal(views[2 + i](img), corner)
                assert torch.equal(views[6 + i](img), TF.horizontal_flip(corner))


def test_eval_path_does_not_import_torchvision():
    code = (
        "import sys, torch\n"
        "from heron.data.transforms import Preprocessing, augmentation, eval_transform, tta_views\n"
        "pre = Preprocessing(size=(16, 16))\n"
        "img = torch.zeros(3, 20, 30, dtype=torch.uint8)\n"
        "eval_transform(pre)(img); [v(img) for v in tta_views(pre, 'multicrop')]; augmentation(pre, 'none')(img)\n"
        "print('torchvision' in sys.modules)\n"
        "augmentation(pre, 'light')(img)\n"
        "print('torchvision' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]
