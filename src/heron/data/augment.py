"""Training augmentation: what to randomise, the torchvision v2 pipeline that does it, AlexNet's colour noise.

- `AugmentSpec` says what to randomise (crop, flips, rotation, shear, zoom,
  elastic warping, colour jitter, PCA colour noise); `PRESETS` names the
  usual mixes ("none", "light", "photo", "strong") and `preset(name, **overrides)`
  starts from one of them.
- `build_augment(spec, pre)` turns a spec into a transform, uint8 `(3, H, W)`
  in, uint8 `(3, h, w)` at `pre.size` out, made of `torchvision.transforms.v2`
  steps so boxes and masks can follow the image later. A spec that randomises
  nothing is the evaluation transform (resize + center crop, plain torch).
- `ColourPCA` holds the principal axes of a dataset's RGB pixel values
  (`colour_pca` computes them in one streaming pass; `load_or_compute_colour_pca`
  caches them per dataset) for AlexNet's PCA colour noise, the v2 transform
  `PCAColourNoise` (a `v2.Transform` subclass, so it is defined on first
  access: subclassing imports torchvision; hence it is not in `__all__`).
- `SeededView` makes any augmentation repeatable per image (cached augmented
  copies, test-time views).

torchvision is imported only when an augmentation is built (its import is
slow, and the evaluation path must not pay for it).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from heron._atomic import atomic_write_json
from heron.data.images import load_image
from heron.data.transforms import Preprocessing, eval_transform
from heron.errors import DataError, ImageError

__all__ = [
    "AugmentSpec",
    "ColourPCA",
    "IMAGENET_COLOUR_PCA",
    "PRESETS",
    "SeededView",
    "build_augment",
    "colour_pca",
    "load_or_compute_colour_pca",
    "preset",
]

Transform = Callable[[torch.Tensor], torch.Tensor]
Range = tuple[float, float]


# ---- what to randomise ------------------------------------------------------------------
@dataclass(frozen=True)
class AugmentSpec:
    """What a training augmentation randomises; the defaults randomise only the horizontal flip.

    Geometry runs first, then colour: one affine (rotation, shear, zoom) on
    the whole image, random resized crop to the output size (or, with
    `crop_scale=None`, the evaluation resize + center crop), flips, elastic
    warping, colour jitter, PCA colour noise. Pixels the affine or elastic
    warp uncovers are filled with the weights' mean colour, which the
    network's normalisation turns into 0; warping before the crop keeps most
    of those corners out of the crop.

    Attributes:
        crop_scale: (min, max) share of the image's area a random resized crop
            keeps (aspect ratio 3/4..4/3, torchvision's default); None: no
            random crop.
        hflip / vflip: mirror left-right / upside-down with probability 1/2.
            Vertical flips are off by default: photos have an up (no
            upside-down dogs); turn them on for microscopy, satellites, etc.
        rotate: degrees; the angle is uniform in [-rotate, rotate].
        shear: degrees of x-axis shear, uniform in [-shear, shear].
        zoom: (min, max) scale factor of the affine; None: no zoom.
        elastic: elastic warping strength alpha (displacement, in pixels
            before smoothing); 0: off. `elastic_sigma` is the smoothing (pixels).
        brightness / contrast / saturation: jitter factors f, each drawn
            uniformly from [1 - f, 1 + f]; `hue` is a shift in [-hue, hue] (<= 0.5).
        pca_colour: std of AlexNet's PCA colour noise (0.1 in the paper); 0: off.
    """

    crop_scale: Range | None = None
    hflip: bool = True
    vflip: bool = False
    rotate: float = 0.0
    shear: float = 0.0
    zoom: Range | None = None
    elastic: float = 0.0
    elastic_sigma: float = 5.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    pca_colour: float = 0.0

    def __post_init__(self) -> None:
        for name in ("crop_scale", "zoom"):  # lists from JSON or a caller become tuples
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(float(v) for v in value))
        _check_spec(self)

    def is_random(self) -> bool:
        """False when the spec changes nothing: then it is the evaluation transform."""
        return not _is_noop(self)

    def describe(self) -> str:
        """One line naming the settings that differ from the defaults, e.g. "crop 0.35-1, colour 0.2".

        Words as the command line's flags have them ("crop" is --crop-scale,
        "colour" is equal brightness, contrast and saturation); a spec that
        randomises nothing is "none (...)". For run titles and config notes.
        """
        if not self.is_random():
            return "none (resize + center crop)"
        parts = [_describe_geometry(self), _describe_colour(self)]
        return ", ".join(p for p in parts if p) or "hflip only"

    def to_dict(self) -> dict:
        """JSON-ready fields (ranges as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "AugmentSpec":
        """The spec `to_dict` wrote; an unknown key is a ValueError (a typo must not pass silently)."""
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise ValueError(f"unknown augmentation settings {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}")
        return cls(**data)


_FIELDS = frozenset(f.name for f in dataclasses.fields(AugmentSpec))


def _is_noop(spec: AugmentSpec) -> bool:
    return (spec.crop_scale is None and not spec.hflip and not spec.vflip and not spec.rotate and not spec.shear
            and spec.zoom in (None, (1.0, 1.0)) and not spec.elastic and not _has_jitter(spec)
            and not spec.pca_colour)


def _has_jitter(spec: AugmentSpec) -> bool:
    return bool(spec.brightness or spec.contrast or spec.saturation or spec.hue)


def _check_range(name: str, value: Range | None, low: float, high: float) -> None:
    if value is None:
        return
    if len(value) != 2 or not (low < value[0] <= value[1] <= high):
        raise ValueError(f"{name} must be (min, max) with {low:g} < min <= max <= {high:g}, got {value}")


def _check_spec(spec: AugmentSpec) -> None:
    """ValueError naming the first setting out of range."""
    _check_range("crop_scale", spec.crop_scale, 0.0, 1.0)
    _check_range("zoom", spec.zoom, 0.0, math.inf)
    for name in ("rotate", "shear", "elastic", "brightness", "contrast", "saturation", "hue", "pca_colour"):
        value = getattr(spec, name)
        if not (isinstance(value, (int, float)) and 0 <= value < math.inf):
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if spec.hue > 0.5:
        raise ValueError(f"hue must be at most 0.5 (half the colour wheel), got {spec.hue}")
    if not spec.elastic_sigma > 0:
        raise ValueError(f"elastic_sigma must be > 0, got {spec.elastic_sigma}")
    if spec.brightness > 1 or spec.contrast > 1 or spec.saturation > 1:
        raise ValueError("brightness, contrast and saturation must be at most 1 (a factor in [1 - f, 1 + f])")


def _range_text(value: Range) -> str:
    return f"{value[0]:g}-{value[1]:g}"


def _describe_geometry(spec: AugmentSpec) -> str:
    parts = [f"crop {_range_text(spec.crop_scale)}" if spec.crop_scale else ""]
    parts += ["" if spec.hflip else "no hflip", "vflip" if spec.vflip else ""]
    parts += [f"rotate {spec.rotate:g}" if spec.rotate else "", f"shear {spec.shear:g}" if spec.shear else ""]
    parts += [f"zoom {_range_text(spec.zoom)}" if spec.zoom and spec.zoom != (1.0, 1.0) else ""]
    parts += [f"elastic {spec.elastic:g}/{spec.elastic_sigma:g}" if spec.elastic else ""]
    return ", ".join(p for p in parts if p)


def _describe_colour(spec: AugmentSpec) -> str:
    bcs = (spec.brightness, spec.contrast, spec.saturation)
    if bcs[0] and bcs[0] == bcs[1] == bcs[2]:
        parts = [f"colour {bcs[0]:g}"]
    else:
        parts = [f"{name} {v:g}" for name, v in zip(("brightness", "contrast", "saturation"), bcs) if v]
    parts += [f"hue {spec.hue:g}" if spec.hue else "", f"pca-colour {spec.pca_colour:g}" if spec.pca_colour else ""]
    return ", ".join(p for p in parts if p)


_PHOTO = AugmentSpec(crop_scale=(0.35, 1.0), hflip=True, brightness=0.2, contrast=0.2, saturation=0.2)

PRESETS: dict[str, AugmentSpec] = {
    "none": AugmentSpec(hflip=False),  # the evaluation transform: resize + center crop
    "light": AugmentSpec(crop_scale=(0.75, 1.0), hflip=False),  # small crops only
    "photo": _PHOTO,  # crops, mirror images, mild colour: the default for photos
    "strong": dataclasses.replace(_PHOTO, rotate=15.0, shear=8.0, zoom=(0.9, 1.1), pca_colour=0.1),
}


def preset(name: str, **overrides: Any) -> AugmentSpec:
    """The named preset with some settings changed: `preset("photo", vflip=True, rotate=10)`."""
    if name not in PRESETS:
        raise ValueError(f"unknown augmentation preset {name!r}; use one of {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown augmentation settings {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}")
    return dataclasses.replace(PRESETS[name], **overrides)


# ---- AlexNet's PCA colour statistics ----------------------------------------------------
@dataclass(frozen=True)
class ColourPCA:
    """Principal axes of RGB pixel values on the 0..1 scale, largest variance first.

    `eigenvalues` (3,) are variances of the pixel values along the axes;
    `eigenvectors` (3, 3) is given row by row (R, G, B) and its column i is
    the axis of `eigenvalues[i]`, as `numpy.linalg.eigh` returns them.
    `images` counts the images the statistics came from.
    """

    eigenvalues: tuple[float, float, float]
    eigenvectors: tuple[tuple[float, float, float], ...]
    images: int = 0

    def __post_init__(self) -> None:
        values = tuple(float(v) for v in self.eigenvalues)
        vectors = tuple(tuple(float(v) for v in row) for row in self.eigenvectors)
        if len(values) != 3 or len(vectors) != 3 or any(len(row) != 3 for row in vectors):
            raise ValueError("ColourPCA needs 3 eigenvalues and a 3x3 eigenvector matrix")
        if not all(math.isfinite(v) and v >= 0 for v in values) or not all(map(math.isfinite, sum(vectors, ()))):
            raise ValueError(f"ColourPCA values must be finite and eigenvalues >= 0, got {values}")
        object.__setattr__(self, "eigenvalues", values)
        object.__setattr__(self, "eigenvectors", vectors)

    def to_dict(self) -> dict:
        return {"eigenvalues": list(self.eigenvalues), "eigenvectors": [list(r) for r in self.eigenvectors],
                "images": self.images}

    @classmethod
    def from_dict(cls, data: dict) -> "ColourPCA":
        return cls(tuple(data["eigenvalues"]), tuple(tuple(r) for r in data["eigenvectors"]), int(data["images"]))


# The ImageNet statistics published with fb.resnet.torch (0..1 scale, the same as ours): the
# fallback when no dataset statistics are given.
IMAGENET_COLOUR_PCA = ColourPCA(
    eigenvalues=(0.2175, 0.0188, 0.0045),
    eigenvectors=((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203)),
)


class _Moments:
    """Running count, sum and sum of outer products of RGB pixels: a covariance in constant memory.

    Pixels are shifted by 0.5 before summing, which keeps the float64 sums
    small and the final subtraction accurate on millions of pixels.
    """

    def __init__(self) -> None:
        self.count, self.total, self.outer = 0, np.zeros(3), np.zeros((3, 3))

    def add(self, pixels: np.ndarray) -> None:
        """Accumulate `pixels (N, 3)` float64 in 0..1."""
        centred = pixels - 0.5  # (N, 3)
        self.count += len(centred)
        self.total += centred.sum(axis=0)
        self.outer += centred.T @ centred  # (3, 3)

    def covariance(self) -> np.ndarray:
        """Sample covariance (3, 3) of everything added (n - 1 in the denominator, as numpy.cov)."""
        mean = self.total / self.count
        return (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)


def _sample_pixels(img: torch.Tensor, limit: int | None) -> np.ndarray:
    """uint8 `(3, H, W)` -> float64 `(N, 3)` in 0..1; at most `limit` evenly spaced pixels (None: all)."""
    pixels = img.reshape(3, -1).T.numpy()  # (H*W, 3) uint8
    if limit is not None and len(pixels) > limit:
        pixels = pixels[(np.arange(limit) * len(pixels)) // limit]  # evenly spaced, deterministic
    return pixels.astype(np.float64) / 255.0


def _decompose(cov: np.ndarray, images: int) -> ColourPCA:
    """Eigen-decomposition of a 3x3 covariance, largest eigenvalue first (tiny negative round-off -> 0)."""
    values, vectors = np.linalg.eigh(cov)  # ascending
    order = np.argsort(values)[::-1]
    return ColourPCA(tuple(np.clip(values[order], 0.0, None)), tuple(map(tuple, vectors[:, order])), images)


def colour_pca(
    paths: Iterable[str | os.PathLike], min_size: int | None = 64, pixels_per_image: int | None = 4096
) -> ColourPCA:
    """Principal axes of the RGB pixel values (0..1) of the images at `paths`, in one streaming pass.

    Each image is decoded small (JPEG draft mode down to `min_size` pixels on
    the short side) and at most `pixels_per_image` evenly spaced pixels enter
    running sums, so memory does not grow with the dataset and a large photo
    weighs no more than a small one. None for either keeps every pixel
    (then the result equals `numpy.cov` of all pixels at once). Unreadable
    images are skipped, as training skips them.

    Raises:
        DataError: no image could be read.
    """
    moments, images = _Moments(), 0
    for path in paths:
        try:
            img = load_image(path, min_size=min_size)  # (3, H, W) uint8
        except ImageError:
            continue
        moments.add(_sample_pixels(img, pixels_per_image))
        images += 1
    if moments.count < 2:
        raise DataError("no readable images to compute colour statistics from; check the training folder")
    return _decompose(moments.covariance(), images)


def _file_stamp(path: str | os.PathLike) -> list:
    """[absolute path, size, mtime_ns]; a missing file stamps as [path, -1, -1]."""
    full = os.path.abspath(os.fspath(path))
    try:
        stat = os.stat(full)
    except OSError:
        return [full, -1, -1]
    return [full, stat.st_size, stat.st_mtime_ns]


def _pca_key(paths: Sequence[str | os.PathLike], min_size: int | None, pixels_per_image: int | None) -> str:
    """Hash of the sorted (path, size, mtime) list and the sampling settings."""
    stamps = sorted(_file_stamp(p) for p in paths)
    text = json.dumps({"version": 1, "min_size": min_size, "pixels_per_image": pixels_per_image, "files": stamps})
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _read_cached_pca(file: Path) -> ColourPCA | None:
    """The ColourPCA stored in `file`, or None when it is missing or damaged."""
    try:
        return ColourPCA.from_dict(json.loads(file.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None


def load_or_compute_colour_pca(
    paths: Sequence[str | os.PathLike],
    cache_root: str | os.PathLike,
    min_size: int | None = 64,
    pixels_per_image: int | None = 4096,
) -> ColourPCA:
    """`colour_pca(paths)`, computed once per dataset and kept in `cache_root/colour_pca/<key>.json`.

    The key hashes the sorted (path, size, mtime) list and the sampling
    settings, so a changed, added or removed image computes it afresh. A
    damaged file is recomputed and replaced; a cache folder that cannot be
    written only costs the recomputation next time.
    """
    file = Path(cache_root) / "colour_pca" / f"{_pca_key(paths, min_size, pixels_per_image)}.json"
    cached = _read_cached_pca(file)
    if cached is not None:
        return cached
    pca = colour_pca(paths, min_size=min_size, pixels_per_image=pixels_per_image)
    try:
        atomic_write_json(file, pca.to_dict(), indent=1)
    except OSError:
        pass  # a read-only cache: the statistics are still right, only not kept
    return pca


# ---- the v2 steps heron adds ------------------------------------------------------------
def _add_colour_offset(img: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Add an RGB `offset (3,)` in 0..1 units to every pixel of `img (..., 3, H, W)`, clamped.

    uint8 images move by `255 * offset` and are rounded; float images are taken as 0..1.
    """
    shift = offset.reshape(3, 1, 1)  # (3, 1, 1)
    if img.dtype.is_floating_point:
        return (img + shift.to(img.dtype)).clamp_(0.0, 1.0)
    return (img.float() + shift * 255.0).round_().clamp_(0.0, 255.0).to(img.dtype)


def _is_plain_tensor(obj: Any) -> bool:
    """A torch.Tensor that is no tv_tensor (v2 takes the first such tensor as the image)."""
    from torchvision import tv_tensors

    return isinstance(obj, torch.Tensor) and not isinstance(obj, tv_tensors.TVTensor)


@functools.cache
def _v2_steps() -> dict[str, type]:
    """heron's own v2 transforms; defined on first use, since subclassing v2.Transform imports torchvision."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as TF

    class PCAColourNoise(v2.Transform):
        """AlexNet's PCA colour noise: every pixel moves along the dataset's principal colour axes.

        Per call alpha ~ N(0, std) (3,) is drawn from torch's generator and
        `eigenvectors @ (alpha * eigenvalues)` (3,) is added to every pixel,
        on the 0..1 scale the statistics were computed on (x255 for uint8
        images), then clamped. This is the scale of fb.resnet.torch's
        "lighting": with ImageNet's eigenvalues and AlexNet's std 0.1 the
        brightest axis moves by about 0.02 (5 of 255 levels) per image.
        Only images change; boxes, masks and other tv_tensors pass through.
        """

        _transformed_types = (tv_tensors.Image, _is_plain_tensor)

        def __init__(self, std: float = 0.1, pca: ColourPCA = IMAGENET_COLOUR_PCA) -> None:
            super().__init__()
            self.std, self.pca = float(std), pca
            self.eigenvalues = torch.tensor(pca.eigenvalues, dtype=torch.float32)  # (3,)
            self.eigenvectors = torch.tensor(pca.eigenvectors, dtype=torch.float32)  # (3, 3), columns are axes

        def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
            alpha = torch.randn(3) * self.std  # (3,)
            return {"offset": self.eigenvectors @ (alpha * self.eigenvalues)}  # (3,) RGB, 0..1 units

        def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
            out = _add_colour_offset(inpt.as_subclass(torch.Tensor), params["offset"])
            return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out

    class ResizeCover(v2.Transform):
        """Resize so the image covers `size` (h, w) keeping its aspect: the evaluation resize, box-aware."""

        def __init__(self, size: Sequence[int], interpolation: v2.InterpolationMode) -> None:
            super().__init__()
            self.size, self.interpolation = (int(size[0]), int(size[1])), interpolation

        def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
            h, w = v2.query_size(flat_inputs)
            scale = max(self.size[0] / h, self.size[1] / w)
            return {"size": [max(self.size[0], round(h * scale)), max(self.size[1], round(w * scale))]}

        def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
            return self._call_kernel(TF.resize, inpt, params["size"], interpolation=self.interpolation,
                                     antialias=True)

    for cls in (PCAColourNoise, ResizeCover):
        cls.__qualname__ = cls.__name__  # pickled by name through this module's __getattr__
    return {"PCAColourNoise": PCAColourNoise, "ResizeCover": ResizeCover}


def __getattr__(name: str) -> type:
    """`PCAColourNoise` (and the private `ResizeCover`), built on first access; pickle finds them here too."""
    if name in ("PCAColourNoise", "ResizeCover"):
        return _v2_steps()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---- spec -> transform ------------------------------------------------------------------
def _fill(pre: Preprocessing) -> dict:
    """Fill for pixels a warp uncovers: the weights' mean colour (0 after normalisation); masks get 0."""
    from torchvision import tv_tensors

    return {tv_tensors.Mask: 0, "others": [round(255 * m) for m in pre.mean]}


def _geometry_steps(spec: AugmentSpec, pre: Preprocessing) -> list:
    """Affine on the whole image (so the crop mostly misses the filled corners), crop, flips, elastic."""
    import torchvision.transforms.v2 as T

    mode = T.InterpolationMode(pre.interpolation)
    warp = T.InterpolationMode.NEAREST if pre.interpolation.startswith("nearest") else T.InterpolationMode.BILINEAR
    steps: list = []
    if spec.rotate or spec.shear or spec.zoom not in (None, (1.0, 1.0)):
        steps.append(T.RandomAffine(degrees=spec.rotate, shear=spec.shear or None, scale=spec.zoom,
                                    interpolation=warp, fill=_fill(pre)))
    if spec.crop_scale is not None:
        steps.append(T.RandomResizedCrop(list(pre.size), scale=spec.crop_scale, interpolation=mode, antialias=True))
    else:
        steps += [_v2_steps()["ResizeCover"](pre.resize_size(), mode), T.CenterCrop(list(pre.size))]
    steps += [T.RandomHorizontalFlip()] if spec.hflip else []
    steps += [T.RandomVerticalFlip()] if spec.vflip else []
    if spec.elastic:  # at the output size, so alpha means the same whatever the photo's size
        steps.append(T.ElasticTransform(alpha=spec.elastic, sigma=spec.elastic_sigma, interpolation=warp,
                                        fill=_fill(pre)))
    return steps


def _colour_steps(spec: AugmentSpec, pca: ColourPCA | None) -> list:
    import torchvision.transforms.v2 as T

    steps: list = []
    if _has_jitter(spec):
        steps.append(T.ColorJitter(brightness=spec.brightness, contrast=spec.contrast, saturation=spec.saturation,
                                   hue=spec.hue))
    if spec.pca_colour:
        steps.append(_v2_steps()["PCAColourNoise"](spec.pca_colour, pca or IMAGENET_COLOUR_PCA))
    return steps


def build_augment(spec: AugmentSpec, pre: Preprocessing, colour_pca: ColourPCA | None = None) -> Transform:
    """The training transform for `spec`: uint8 `(3, H, W)` -> uint8 `(3, *pre.size)`.

    A `torchvision.transforms.v2.Compose` (random draws from torch's global
    generator, so `torch.manual_seed`, DataLoader worker seeding and
    `SeededView` make it repeatable). `colour_pca` gives the dataset's
    colour statistics for `spec.pca_colour` (default: ImageNet's). A spec that
    randomises nothing returns `eval_transform(pre)` and imports no torchvision.
    """
    if not spec.is_random():
        return eval_transform(pre)
    import torchvision.transforms.v2 as T  # only training augmentations pay for torchvision

    return T.Compose(_geometry_steps(spec, pre) + _colour_steps(spec, colour_pca))


# ---- repeatable augmentation ------------------------------------------------------------
class SeededView:
    """An augmentation made repeatable: the same image and copy number give the same result.

    Cached augmented copies must not change between runs, or the cache key
    would lie, and test-time views must not change between calls; the seed
    comes from a CRC of the pixels and the copy number, and the draws happen
    inside `torch.random.fork_rng`, so the caller's random stream is untouched.
    """

    def __init__(self, transform: Transform, copy: int) -> None:
        self.transform, self.copy = transform, copy

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        seed = zlib.crc32(img.numpy().tobytes()) ^ (self.copy * 0x9E3779B1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed & 0x7FFFFFFF)
            return self.transform(img)

    def __repr__(self) -> str:
        return f"SeededView({self.transform!r}, copy={self.copy})"
