"""Image preprocessing: resize, crop, normalise, test-time views; the door to training augmentation.

Transforms here map a uint8 `(3, H, W)` tensor to a uint8 `(3, h, w)` tensor
at the network's input size; workers ship those small uint8 tensors and the
network normalises whole batches itself (mean/std are buffers of the model). What a set of weights
expects (size, crop fraction, mean/std, interpolation) comes from its
`WeightSpec`, so preprocessing travels with the weights.

The evaluation path (`eval_transform`, the "flip" and "multicrop" `tta_views`)
is plain torch: the same arithmetic as `torchvision.transforms.v2.functional.resize` /
`center_crop` / `five_crop` / `horizontal_flip`, bit for bit (tests check it), without
importing torchvision, whose import costs more than a warm run's training.
Training augmentation (`augmentation`, `train_transform`) and the "random:N"
test-time views are `heron.data.augment`'s torchvision v2 pipelines and load
`torchvision.transforms.v2` only when asked for.
"""

from __future__ import annotations

import functools
import math
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # pragma: no cover
    from heron.data.augment import AugmentSpec, ColourPCA

__all__ = [
    "Preprocessing",
    "augmentation",
    "eval_transform",
    "train_transform",
    "tta_views",
    "as_size",
]

Size = tuple[int, int]


def as_size(size: int | Sequence[int]) -> Size:
    """`224` -> (224, 224); `(360, 640)` stays (height, width)."""
    if isinstance(size, int):
        return (size, size)
    size = tuple(int(s) for s in size)
    if len(size) == 1:
        return (size[0], size[0])
    if len(size) != 2:
        raise ValueError(f"size must be one or two numbers, got {size}")
    return size  # type: ignore[return-value]


@dataclass(frozen=True)
class Preprocessing:
    """Everything that turns a decoded photo into the network's input tensor."""

    size: Size = (224, 224)
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    @classmethod
    def from_spec(cls, spec, size: int | Sequence[int] | None = None, crop_pct: float | None = None) -> "Preprocessing":
        """Preprocessing for weights `spec` (a WeightSpec or None), optionally at another size or crop."""
        if spec is None:
            return cls(size=as_size(size or 224), crop_pct=crop_pct or 0.875)
        return cls(
            size=as_size(size or spec.input_size),
            crop_pct=crop_pct or spec.crop_pct,
            mean=tuple(spec.mean),
            std=tuple(spec.std),
            interpolation=spec.interpolation,
        )

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        return cls(
            size=as_size(data["size"]),
            crop_pct=float(data["crop_pct"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            interpolation=data["interpolation"],
        )

    def resize_size(self) -> Size:
        """Size before the center crop: the crop covers `crop_pct` of the resized image."""
        h, w = self.size
        return (math.floor(h / self.crop_pct), math.floor(w / self.crop_pct))

    def decode_min_size(self) -> int:
        """Smallest side a JPEG may be draft-decoded to without losing resolution we need."""
        return min(self.resize_size())


# ---- torch-only kernels (torchvision.transforms.v2.functional's arithmetic) -------------
_INTERPOLATIONS = ("nearest", "nearest-exact", "bilinear", "bicubic")


@functools.cache
def _vector_cpu() -> bool:
    """True where torch's uint8 bilinear kernel is vectorised (AVX2, AVX512, ARM64)."""
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") or platform.machine() in ("aarch64", "arm64")


def _native_uint8(mode: str, device: torch.device) -> bool:
    """Whether torch resizes uint8 directly (else via float32 and rounding), as torchvision decides."""
    if mode in ("nearest", "nearest-exact"):
        return True
    if device.type != "cpu":
        return False
    if mode == "bilinear":
        return _vector_cpu()
    return mode == "bicubic"


def resize(img: torch.Tensor, size: Sequence[int], interpolation: str = "bilinear") -> torch.Tensor:
    """`img (..., C, H, W)` resized to `size` (h, w), antialiased when shrinking.

    Bit-identical to `torchvision.transforms.v2.functional.resize(img, size,
    interpolation, antialias=True)` for uint8 and float tensors.
    """
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; use one of {', '.join(_INTERPOLATIONS)}")
    smooth = interpolation in ("bilinear", "bicubic")
    shape = img.shape
    channels, old_h, old_w = shape[-3:]
    new_h, new_w = int(size[0]), int(size[1])
    if (new_h, new_w) == (old_h, old_w):
        return img
    if img.numel() == 0:
        return img.reshape(shape[:-3] + (channels, new_h, new_w))
    dtype = img.dtype
    x = img.reshape(-1, channels, old_h, old_w)  # (N, C, H, W)
    strides = x.stride()
    if x.is_contiguous(memory_format=torch.channels_last) and x.shape[0] == 1 and img.numel() != strides[0]:
        # keep a single channels-last image channels-last (interpolate would allocate it contiguous)
        x = x.as_strided((1, channels, old_h, old_w), (img.numel(), *strides[1:]))
    cast = dtype not in (torch.float32, torch.float64) and not (dtype == torch.uint8 and _native_uint8(interpolation, x.device))
    if cast:
        x = x.to(torch.float32)
    x = F.interpolate(x, size=[new_h, new_w], mode=interpolation, align_corners=False if smooth else None,
                      antialias=smooth)
    if cast:
        if interpolation == "bicubic" and dtype == torch.uint8:
            x = x.clamp_(0, 255)
        if not dtype.is_floating_point:
            x = x.round_()
        x = x.to(dtype)
    return x.reshape(shape[:-3] + (channels, new_h, new_w))


def center_crop(img: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The central `size` (h, w) of `img (..., H, W)`, zero-padded when the image is smaller."""
    crop_h, crop_w = int(size[0]), int(size[1])
    shape = img.shape
    if img.numel() == 0:
        return img.reshape(shape[:-2] + (crop_h, crop_w))
    h, w = shape[-2:]
    if crop_h > h or crop_w > w:
        pad_w, pad_h = max(crop_w - w, 0), max(crop_h - h, 0)
        img = F.pad(img, [pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2], value=0.0)
        h, w = img.shape[-2:]
        if (crop_h, crop_w) == (h, w):
            return img
    top, left = int(round((h - crop_h) / 2.0)), int(round((w - crop_w) / 2.0))
    return img[..., top : top + crop_h, left : left + crop_w]


def five_crop(img: torch.Tensor, size: Sequence[int]) -> tuple[torch.Tensor, ...]:
    """Top-left, top-right, bottom-left, bottom-right and center crops of `size` (h, w)."""
    crop_h, crop_w = int(size[0]), int(size[1])
    h, w = img.shape[-2:]
    if crop_h > h or crop_w > w:
        raise ValueError(f"Requested crop size {tuple(size)} is bigger than input size {(h, w)}")
    tl = img[..., :crop_h, :crop_w]
    tr = img[..., :crop_h, w - crop_w :]
    bl = img[..., h - crop_h :, :crop_w]
    br = img[..., h - crop_h :, w - crop_w :]
    return tl, tr, bl, br, center_crop(img, (crop_h, crop_w))


def horizontal_flip(img: torch.Tensor) -> torch.Tensor:
    """`img (..., H, W)` mirrored left to right."""
    return img.flip(-1)


def _resize_cover(img: torch.Tensor, size: Size, interpolation: str) -> torch.Tensor:
    """Resize so the image covers `size` (h, w) on both sides, keeping its aspect ratio."""
    h, w = img.shape[-2:]
    scale = max(size[0] / h, size[1] / w)
    new = (max(size[0], round(h * scale)), max(size[1], round(w * scale)))
    return resize(img, new, interpolation)


# ---- the transforms ---------------------------------------------------------------------
def eval_transform(pre: Preprocessing) -> Callable[[torch.Tensor], torch.Tensor]:
    """Deterministic: resize to cover size/crop_pct, center-crop to size. uint8 in, uint8 out."""
    resize_to = pre.resize_size()

    def transform(img: torch.Tensor) -> torch.Tensor:
        img = _resize_cover(img, resize_to, pre.interpolation)
        return center_crop(img, pre.size)  # (3, h, w)

    return transform


def train_transform(
    pre: Preprocessing, scale: tuple[float, float] = (0.35, 1.0), flip: bool = True, jitter: float = 0.2
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Random resized crop, horizontal flip, mild colour jitter: the "photo" preset, with its knobs."""
    from heron.data.augment import AugmentSpec, build_augment  # builds on this module

    spec = AugmentSpec(crop_scale=scale, hflip=flip, brightness=jitter, contrast=jitter, saturation=jitter)
    return build_augment(spec, pre)


def augmentation(
    pre: Preprocessing, kind: str | AugmentSpec = "photo", colour_pca: ColourPCA | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Training transform for a preset name ("none", "light", "photo", "strong") or an `AugmentSpec`.

    `colour_pca` is the dataset's colour statistics for PCA colour noise
    (`heron.data.augment.load_or_compute_colour_pca`); without it ImageNet's
    are used. "none" is `eval_transform(pre)`. An unknown name is a ValueError.
    """
    from heron.data.augment import build_augment, preset  # builds on this module

    spec = preset(kind) if isinstance(kind, str) else kind
    return build_augment(spec, pre, colour_pca)


_TTA_FORMS = "'flip', 'multicrop' or 'random:N' (N >= 1 augmented views)"


def _random_view_count(mode: str) -> int:
    """N from "random:N"; ValueError for anything else."""
    count = mode[len("random:"):] if mode.startswith("random:") else ""
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"unknown TTA mode {mode!r}; use {_TTA_FORMS}")
    return int(count)


def _random_views(pre: Preprocessing, count: int) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """`count` mild random views (the "light" crops plus a mirror), each repeatable per image."""
    from heron.data.augment import SeededView, build_augment, preset  # builds on this module

    augment = build_augment(preset("light", hflip=True), pre)
    return [SeededView(augment, copy) for copy in range(count)]


def tta_views(pre: Preprocessing, mode: str = "flip") -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """Deterministic test-time views of one image; their probabilities are averaged.

    "flip": center crop and its mirror. "multicrop": the center and four corner
    crops of the resized image, each also mirrored (10 views). "random:N": N
    random crops of 75-100% of the image's area, each mirrored with
    probability 1/2, seeded by the pixels and the view number (`SeededView`),
    so the same image always gets the same N views.
    """
    if mode.startswith("random"):
        return _random_views(pre, _random_view_count(mode))
    base = eval_transform(pre)
    views: list[Callable] = [base, lambda img: horizontal_flip(base(img))]
    if mode == "flip":
        return views
    if mode != "multicrop":
        raise ValueError(f"unknown TTA mode {mode!r}; use {_TTA_FORMS}")
    resize_to = pre.resize_size()

    def corner(index: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def view(img: torch.Tensor) -> torch.Tensor:
            img = _resize_cover(img, resize_to, pre.interpolation)
            return five_crop(img, pre.size)[index]

        return view

    corners = [corner(i) for i in range(4)]
    mirrored = [lambda img, v=v: horizontal_flip(v(img)) for v in corners]
    return views + corners + mirrored
