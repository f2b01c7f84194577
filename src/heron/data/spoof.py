"""A synthetic live-vs-spoof set: photos, and photos of photos shown on a screen or a print.

A presentation attack holds a picture of someone up to the camera. What the
camera then records differs from a live capture in ways a classifier can
learn, and `recapture` draws them:

- moire: the screen's pixel grid (or a print's halftone) beats against the
  camera's sensor grid; two fine sinusoidal gratings at close frequencies
  and angles multiply into slow bands, tinted per channel as sub-pixels are;
- a frame: the screen's dark bezel or the paper's light margin, and beyond it
  sometimes the room;
- a colour cast (screens run blue, prints warm), the display's gamma and
  lifted blacks, lower contrast;
- blur (the camera focused on a flat surface at arm's length), a glare spot,
  and sensor noise.

`write_liveness_set` writes `live/*.png` (crops of the photographs bundled
with scikit-image and simple drawn portraits, lightly jittered) and
`spoof/*.png` (recaptures of *other* such images, so no spoof shares its
content with a live image). Every effect is drawn from the seeded
generator: the same seed writes the same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["recapture", "live_image", "write_liveness_set", "PHOTO_SOURCES"]

# Photographs scikit-image ships inside its wheel (no download).
PHOTO_SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
                 "retina", "camera", "coins", "moon", "clock", "brick", "grass", "gravel")
PORTRAIT_SHARE = 0.35  # fraction of live images that are drawn portraits rather than photo crops


# ---- recapture: what a photo of a screen or a print looks like ------------------------------
def _moire(height: int, width: int, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """(H, W, 3) multiplicative factor 1 + a * grating1 * grating2, the product of two close fine gratings."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    freq = rng.uniform(0.22, 0.42)  # cycles per pixel: finer than the image content, near the sensor's limit
    angle = rng.uniform(0, np.pi)
    freq2 = freq * (1 + rng.uniform(0.03, 0.15))
    angle2 = angle + rng.uniform(-0.12, 0.12)
    first = np.cos(2 * np.pi * freq * (x * np.cos(angle) + y * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
    factor = np.empty((height, width, 3), np.float32)
    for c in range(3):  # sub-pixels sit side by side: each channel's grating is shifted a little
        shift = c * rng.uniform(0.3, 1.2)
        second = np.cos(2 * np.pi * freq2 * (x * np.cos(angle2) + y * np.sin(angle2)) + shift)
        factor[..., c] = 1 + amplitude * first * second  # cos * cos: a slow beat plus a fine ripple
    return factor


def _tone(image: np.ndarray, rng: np.random.Generator, strength: float, kind: str) -> np.ndarray:
    """The display's or print's tone curve and colour: gamma, contrast, lifted blacks, a cast."""
    gamma = float(np.exp(rng.normal(0, 0.2) * strength))
    contrast = 1 - strength * rng.uniform(0.1, 0.3)
    black = strength * rng.uniform(0.02, 0.08)
    direction = np.array([-0.6, 0.0, 1.0] if kind == "screen" else [1.0, 0.3, -0.8], np.float32)
    cast = 1 + strength * (rng.uniform(0.04, 0.12) * direction + rng.normal(0, 0.03, 3))
    out = np.clip(image, 0, 1) ** gamma
    out = 0.5 + (out - 0.5) * contrast + black
    return out * cast.astype(np.float32)


def _frame(image: np.ndarray, rng: np.random.Generator, strength: float, kind: str) -> np.ndarray:
    """The picture shrunk into a screen's bezel (or a print's margin), sometimes with the room beyond."""
    height, width = image.shape[:2]
    sides = strength * rng.uniform(0.04, 0.14, 4) * (rng.random(4) > 0.2)  # top, bottom, left, right
    top, bottom, left, right = (round(f * n) for f, n in zip(sides, (height, height, width, width)))
    inner_h, inner_w = height - top - bottom, width - left - right
    if max(top, bottom, left, right) == 0 or min(inner_h, inner_w) < 4:
        return image
    shade = rng.uniform(0.02, 0.15) if kind == "screen" else rng.uniform(0.8, 0.95)
    canvas = np.full((height, width, 3), shade, np.float32) + rng.normal(0, 0.01, (height, width, 3)).astype(np.float32)
    if rng.random() < 0.5:  # the room around the device: a smooth colour field beyond an outer edge
        room = _smooth_field(rng, height, width)
        edge = max(1, round(0.5 * min(top, bottom, left, right, key=lambda v: v or 10**6)))
        canvas[:edge], canvas[-edge:] = room[:edge], room[-edge:]
        canvas[:, :edge], canvas[:, -edge:] = room[:, :edge], room[:, -edge:]
    small = Image.fromarray(_to_uint8(image)).resize((inner_w, inner_h), Image.BILINEAR)
    canvas[top:top + inner_h, left:left + inner_w] = np.asarray(small, np.float32) / 255
    if kind == "screen":  # the glass edge catches a little light
        canvas[max(0, top - 1), left:left + inner_w] += 0.08
    return canvas


def _glare(height: int, width: int, rng: np.random.Generator, strength: float) -> np.ndarray:
    """(H, W, 1) additive soft highlight of a lamp reflected in the glass or gloss."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    sy, sx = rng.uniform(0.1, 0.35) * height, rng.uniform(0.1, 0.35) * width
    amount = strength * rng.uniform(0.1, 0.3)
    return (amount * np.exp(-0.5 * (((y - cy) / sy) ** 2 + ((x - cx) / sx) ** 2)))[..., None]


def _blur(image: np.ndarray, radius: float) -> np.ndarray:
    if radius <= 0.05:
        return image
    blurred = Image.fromarray(_to_uint8(image)).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(blurred, np.float32) / 255


def recapture(rgb: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """A photo of `rgb` (H, W, 3 uint8) shown on a screen or printed: the same shape, uint8.

    `strength` scales every effect; 0 returns the image unchanged. A screen
    (two in three draws) adds a dark bezel, a blue cast and a pixel-grid
    moire; a print a light margin, a warm cast and a finer halftone moire.
    """
    image = np.asarray(rgb, np.float32)[..., :3] / 255
    if strength <= 0:
        return _to_uint8(image)
    height, width = image.shape[:2]
    kind = "screen" if rng.random() < 2 / 3 else "print"
    image = _tone(image, rng, strength, kind)
    image = _frame(image, rng, strength, kind)
    moire = strength * (rng.uniform(0.08, 0.18) if kind == "screen" else rng.uniform(0.05, 0.1))
    image = image * _moire(height, width, rng, moire)
    if rng.random() < 0.5:
        image = image + _glare(height, width, rng, strength)
    image = _blur(image, strength * rng.uniform(0.4, 1.2) * max(height, width) / 128)
    image = image + rng.normal(0, 0.012 * strength, image.shape).astype(np.float32)
    return _to_uint8(image)


# ---- live images ------------------------------------------------------------------------------
def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(image) * 255 + 0.5, 0, 255).astype(np.uint8)


def _smooth_field(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float colour field: a few random colours blended smoothly (a wall, a room)."""
    coarse = rng.uniform(0.15, 0.85, (3, 3, 3))
    field = Image.fromarray(_to_uint8(coarse)).resize((width, height), Image.BICUBIC)
    return np.asarray(field, np.float32) / 255


def _photos() -> dict[str, np.ndarray]:
    """The bundled photographs as (H, W, 3) uint8 RGB, grey ones replicated to three channels."""
    import skimage.data

    photos = {}
    for name in PHOTO_SOURCES:
        image = np.asarray(getattr(skimage.data, name)())
        photos[name] = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
    return photos


def _photo_crop(photos: dict[str, np.ndarray], rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop (35-100 % of the short side) of a random photo, resized to `size`."""
    photo = photos[PHOTO_SOURCES[rng.integers(len(PHOTO_SOURCES))]]
    height, width = photo.shape[:2]
    side = max(8, round(rng.uniform(0.35, 1.0) * min(height, width)))
    y, x = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    crop = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.LANCZOS)
    return np.asarray(crop)


def _portrait(rng: np.random.Generator, size: int) -> np.ndarray:
    """A simple drawn head and shoulders on a smooth background, drawn at 2x and shrunk (anti-aliased)."""
    big = 2 * size
    canvas = Image.fromarray(_to_uint8(_smooth_field(rng, big, big)))
    draw = ImageDraw.Draw(canvas)
    skin = tuple(int(v) for v in rng.uniform([90, 55, 35], [240, 200, 170]))
    hair = tuple(int(v) for v in rng.uniform(10, 120, 3))
    shirt = tuple(int(v) for v in rng.uniform(20, 230, 3))
    cx, cy = big * rng.uniform(0.4, 0.6), big * rng.uniform(0.38, 0.5)
    rx, ry = big * rng.uniform(0.16, 0.22), big * rng.uniform(0.21, 0.28)
    draw.ellipse([cx - 2.2 * rx, cy + 0.9 * ry, cx + 2.2 * rx, cy + 3.5 * ry], fill=shirt)  # shoulders
    draw.ellipse([cx - 1.08 * rx, cy - 1.15 * ry, cx + 1.08 * rx, cy + 0.3 * ry], fill=hair)  # hair behind
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=skin)
    eye_y, eye_dx, eye_r = cy - 0.15 * ry, 0.42 * rx, 0.09 * rx
    for side in (-1, 1):
        ex = cx + side * eye_dx
        draw.ellipse([ex - 2 * eye_r, eye_y - eye_r, ex + 2 * eye_r, eye_y + eye_r], fill=(235, 235, 230))
        draw.ellipse([ex - eye_r, eye_y - eye_r, ex + eye_r, eye_y + eye_r], fill=hair)
        draw.line([ex - 2.2 * eye_r, eye_y - 2.5 * eye_r, ex + 2.2 * eye_r, eye_y - 2.8 * eye_r], fill=hair,
                  width=max(1, round(eye_r)))
    shadow = tuple(int(0.8 * v) for v in skin)
    draw.line([cx, eye_y + eye_r, cx - 0.08 * rx, cy + 0.3 * ry], fill=shadow, width=max(1, round(0.5 * eye_r)))
    mouth_y = cy + 0.52 * ry
    draw.arc([cx - 0.35 * rx, mouth_y - 0.15 * ry, cx + 0.35 * rx, mouth_y + 0.12 * ry], 20, 160,
             fill=(150, 60, 60), width=max(1, round(0.6 * eye_r)))
    soft = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    return np.asarray(soft.resize((size, size), Image.LANCZOS))


def live_image(photos: dict[str, np.ndarray], rng: np.random.Generator, size: int) -> np.ndarray:
    """One live capture: a photo crop or a drawn portrait, mirrored at random, light exposure jitter and noise."""
    image = _portrait(rng, size) if rng.random() < PORTRAIT_SHARE else _photo_crop(photos, rng, size)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    pixels = image.astype(np.float32) / 255 * rng.uniform(0.85, 1.15) + rng.uniform(-0.05, 0.05)
    pixels = _blur(pixels, rng.uniform(0.0, 0.6) * size / 128)  # live captures are not all perfectly sharp
    return _to_uint8(pixels + rng.normal(0, 0.01, pixels.shape).astype(np.float32))


def write_liveness_set(folder: str | Path, per_class: int = 60, size: int = 128, seed: int = 0) -> Path:
    """Write `folder/live/live_NNN.png` and `folder/spoof/spoof_NNN.png`, `per_class` each; returns `folder`.

    A spoof is `recapture` of a live image drawn at twice `size` and shrunk,
    as a camera sees a screen: the fine gratings average out and the slow
    moire bands stay. Spoofs recapture fresh draws, never a written live image.
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    photos = _photos()
    for name in ("live", "spoof"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i in range(per_class):
        Image.fromarray(live_image(photos, rng, size)).save(folder / "live" / f"live_{i:03d}.png", compress_level=1)
        shown = recapture(live_image(photos, rng, 2 * size), rng)
        Image.fromarray(shown).resize((size, size), Image.BOX).save(folder / "spoof" / f"spoof_{i:03d}.png",
                                                                          compress_level=1)
    return folder
