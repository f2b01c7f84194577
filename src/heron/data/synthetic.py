"""Synthetic image sets with known answers, written as ordinary files: shapes with their boxes.

`write_shapes` draws one shape per image (circle, square or triangle, of a
random size, colour and position) on a noisy, cluttered background and
writes `folder/<shape>/<n>.png` plus `boxes.csv` (file, x1, y1, x2, y2 in
pixels). The label and the box are exact, so localisation can be measured
without any download; the clutter (faint lines, noise) keeps it from being
trivial.

`write_detection_shapes` draws several such shapes per image (partial
overlaps allowed, some images empty) and writes a detection data set in VOC,
YOLO or COCO form with `heron.data.detection`'s writers.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SHAPES", "background", "clustered_boxes", "digit_photo", "write_detection_shapes", "write_digit_people",
           "write_shapes"]

SHAPES = ("circle", "square", "triangle")


def background(rng: np.random.Generator, size: int, float32_noise: bool = False) -> Image.Image:
    """Smooth colour noise with a few faint lines.

    `float32_noise` draws the noise in float32: the same look, a few times
    faster for large sets (a different random stream, so older sets keep the default).
    """
    coarse = rng.uniform(40, 200, size=(4, 4, 3))
    base = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((size, size), Image.BILINEAR), np.float32)
    if float32_noise:
        noise = rng.standard_normal((size, size, 3), dtype=np.float32) * 18
    else:
        noise = rng.normal(0, 18, size=(size, size, 3))
    img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0, x1, y1 = rng.integers(0, size, 4).tolist()
        draw.line((x0, y0, x1, y1), fill=tuple(rng.integers(60, 200, 3).tolist()), width=1)
    return img


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], colour: tuple) -> None:
    x1, y1, x2, y2 = box
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=colour)
    else:
        draw.polygon([((x1 + x2) / 2, y1), (x2, y2), (x1, y2)], fill=colour)


def write_shapes(folder: str | Path, per_class: int = 60, size: int = 96, seed: int = 0,
                 min_frac: float = 0.25, max_frac: float = 0.6) -> Path:
    """Write `per_class` images of each of `SHAPES`; returns the path of `boxes.csv`.

    Each shape's box side is `min_frac..max_frac` of the image side, placed
    anywhere it fits; the box written is the shape's exact extent.
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    rows = []
    for shape in SHAPES:
        (folder / shape).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            img = background(rng, size)
            side = int(rng.uniform(min_frac, max_frac) * size)
            x1, y1 = (int(v) for v in rng.integers(0, size - side + 1, 2))
            box = (x1, y1, x1 + side, y1 + side)
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            _draw(ImageDraw.Draw(img), shape, box, colour)
            name = f"{shape}/{n:04d}.png"
            img.save(folder / name)
            rows.append([name, *box])
    path = folder / "boxes.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "x1", "y1", "x2", "y2"])
        writer.writerows(rows)
    return path


def _overlaps_too_much(box: tuple[int, int, int, int], placed: list[tuple[int, int, int, int]],
                       limit: float = 0.5) -> bool:
    """True when `box` covers more than `limit` of itself or of an already placed box."""
    x1, y1, x2, y2 = box
    for a1, b1, a2, b2 in placed:
        inter = max(0, min(x2, a2) - max(x1, a1)) * max(0, min(y2, b2) - max(y1, b1))
        if inter > limit * min((x2 - x1) * (y2 - y1), (a2 - a1) * (b2 - b1)):
            return True
    return False


def _scene(rng: np.random.Generator, size: int, count: int, min_frac: float, max_frac: float):
    """One image with up to `count` shapes: (PIL image, [(class index, (x1, y1, x2, y2))])."""
    img = background(rng, size, float32_noise=True)
    objects, placed = [], []
    for _ in range(count):
        for _try in range(20):
            side = max(3, int(rng.uniform(min_frac, max_frac) * size))
            x1, y1 = (int(v) for v in rng.integers(0, size - side + 1, 2))
            if not _overlaps_too_much((x1, y1, x1 + side, y1 + side), placed):
                break
        else:
            continue
        label = int(rng.integers(len(SHAPES)))
        mask = Image.new("L", (side + 1, side + 1), 0)  # room for an outline drawn on the last pixel
        _draw(ImageDraw.Draw(mask), SHAPES[label], (0, 0, side, side), 255)
        extent = mask.getbbox()  # the exact extent of the drawn pixels, right/bottom exclusive
        if extent is None:
            continue
        img.paste(tuple(int(c) for c in rng.integers(0, 256, 3)), (x1, y1), mask=mask)
        placed.append((x1, y1, x1 + side, y1 + side))
        objects.append((label, tuple(min(v + o, size) for v, o in zip(extent, (x1, y1, x1, y1)))))
    return img, objects


def write_detection_shapes(folder: str | Path, images: int = 300, size: int = 256, seed: int = 0,
                           fmt: str = "voc", max_objects: int = 6, min_frac: float = 0.08,
                           max_frac: float = 0.4, empty_frac: float = 0.05) -> Path:
    """Write a detection set of `images` PNGs with 1..`max_objects` shapes each; returns `folder`.

    Layout: `folder/images/*.png` plus, by `fmt`, `folder/annotations/*.xml`
    (voc), `folder/labels/*.txt` + `classes.txt` (yolo) or
    `folder/annotations.json` (coco), all readable by `load_detection`.
    Box sides are `min_frac..max_frac` of the image side; a shape may hide at
    most half of another. Each box is the exact extent of its shape's pixels.
    About `empty_frac` of the images have no object (background images).
    """
    from heron.data.detection import Annotation, write_coco, write_voc, write_yolo

    if fmt not in ("voc", "yolo", "coco"):
        raise ValueError(f"fmt must be 'voc', 'yolo' or 'coco', got {fmt!r}")
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    anns = []
    for n in range(images):
        count = 0 if rng.random() < empty_frac else int(rng.integers(1, max_objects + 1))
        img, objects = _scene(rng, size, count, min_frac, max_frac)
        path = folder / "images" / f"{n:05d}.png"
        img.save(path, compress_level=0)  # noise does not compress; storing is 10x faster
        boxes = np.asarray([b for _, b in objects], np.float32).reshape(-1, 4)
        labels = np.asarray([c for c, _ in objects], np.int64)
        anns.append(Annotation(path=path, boxes=boxes, labels=labels, width=size, height=size))
    if fmt == "voc":
        write_voc(anns, SHAPES, folder / "annotations")
    elif fmt == "yolo":
        write_yolo(anns, SHAPES, folder / "labels")
    else:
        write_coco(anns, SHAPES, folder / "annotations.json", image_dir=folder / "images")
    return folder


def clustered_boxes(n: int, seed: int = 0, size: float = 640.0, per_object: int = 10,
                    sides: tuple[float, float] = (4.0, 84.0), jitter: float = 0.2, shape_jitter: float = 0.25):
    """`n` xyxy boxes `Tensor[n, 4]` jittered around n / `per_object` objects, and `n` distinct scores in (0, 1].

    What a detector hands to NMS: many overlapping guesses per object.
    Objects lie in a `size` square with sides in `sides`; a guess's centre
    moves by `jitter` and its sides by `shape_jitter` of the object's sides.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    objects = max(1, n // per_object)
    centres = torch.rand(objects, 2, generator=g) * size
    object_sides = torch.rand(objects, 2, generator=g) * (sides[1] - sides[0]) + sides[0]
    which = torch.randint(0, objects, (n,), generator=g)
    ctr = centres[which] + torch.randn(n, 2, generator=g) * object_sides[which] * jitter
    wh = object_sides[which] * (1 + shape_jitter * torch.randn(n, 2, generator=g)).clamp(min=0.2)
    scores = (torch.randperm(n, generator=g).float() + 1) / n
    return torch.cat([ctr - wh / 2, ctr + wh / 2], dim=1), scores


# ---- identities for one-shot recognition: handwritten samples photographed many times
def digit_photo(image8: np.ndarray, rng: np.random.Generator, size: int):
    """One "photo" of a handwritten digit (8x8, ink 0..16): random pose, stroke width, blur, contrast and
    noise, dark ink on white, as a size x size greyscale PIL image. What varies between photos of a face."""
    from PIL import ImageFilter

    big = size * 2
    ink = Image.fromarray((image8 / 16.0 * 255).astype(np.uint8)).resize((big, big), Image.BICUBIC)
    stroke = rng.integers(3)
    if stroke == 1:
        ink = ink.filter(ImageFilter.MaxFilter(5))
    elif stroke == 2:
        ink = ink.filter(ImageFilter.MinFilter(3))
    angle, scale = rng.uniform(-10, 10), rng.uniform(0.85, 1.05)
    ink = ink.rotate(angle, Image.BICUBIC, translate=tuple(rng.uniform(-0.06, 0.06, 2) * big))
    side = int(big * scale)
    canvas = Image.new("L", (big, big))
    canvas.paste(ink.resize((side, side), Image.BICUBIC), ((big - side) // 2, (big - side) // 2))
    canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2))).resize((size, size), Image.BILINEAR)
    pixels = np.asarray(canvas, dtype=np.float32) * rng.uniform(0.7, 1.0) + rng.normal(0, 8, (size, size))
    return Image.fromarray((255 - pixels).clip(0, 255).astype(np.uint8))


def write_digit_people(root: Path, digits, per_digit: int, photos: int, size: int = 64, seed: int = 0) -> Path:
    """`root/<digit>-<sample>/<n>.png`: `per_digit` handwritten samples of each digit (seeded) are the
    identities, each photographed `photos` times by `digit_photo`."""
    from sklearn.datasets import load_digits

    data = load_digits()
    rng = np.random.default_rng(seed)
    for digit in digits:
        for index in rng.permutation(np.flatnonzero(data.target == digit))[:per_digit]:
            folder = Path(root) / f"{digit}-{index:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(photos):
                digit_photo(data.images[index], rng, size).save(folder / f"{n:02d}.png")
    return Path(root)
