"""Image preprocessing: resize, crop, augment, normalise, test-time views.

Transforms here map a uint8 `(3, H, W)` tensor to a uint8 `(3, h, w)` tensor
at the network's input size; workers ship those small uint8 tensors and the
network normalises whole batches itself (mean/std are buffers of the model). What a set of weights
expects (size, crop fraction, mean/std, interpolation) comes from its
`WeightSpec`, so preprocessing travels with the weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF

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


def _interp(name: str) -> T.InterpolationMode:
    return T.InterpolationMode(name)


def _resize_cover(img: torch.Tensor, size: Size, interpolation: str) -> torch.Tensor:
    """Resize so the image covers `size` (h, w) on both sides, keeping its aspect ratio."""
    h, w = img.shape[-2:]
    scale = max(size[0] / h, size[1] / w)
    new = (max(size[0], round(h * scale)), max(size[1], round(w * scale)))
    return TF.resize(img, list(new), interpolation=_interp(interpolation), antialias=True)


def eval_transform(pre: Preprocessing) -> Callable[[torch.Tensor], torch.Tensor]:
    """Deterministic: resize to cover size/crop_pct, center-crop to size. uint8 in, uint8 out."""
    resize_to = pre.resize_size()

    def transform(img: torch.Tensor) -> torch.Tensor:
        img = _resize_cover(img, resize_to, pre.interpolation)
        return TF.center_crop(img, list(pre.size))  # (3, h, w)

    return transform


def train_transform(
    pre: Preprocessing, scale: tuple[float, float] = (0.35, 1.0), flip: bool = True, jitter: float = 0.2
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Random resized crop, horizontal flip, mild colour jitter: augmentation for photos."""
    steps: list[Callable] = [T.RandomResizedCrop(list(pre.size), scale=scale, interpolation=_interp(pre.interpolation), antialias=True)]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    if jitter:
        steps.append(T.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
    return T.Compose(steps)


def augmentation(pre: Preprocessing, kind: str = "photo") -> Callable[[torch.Tensor], torch.Tensor]:
    """Training transform by name: "photo" (crops, flips, colour), "light" (small crops), "none"."""
    if kind == "photo":
        return train_transform(pre)
    if kind == "light":
        return train_transform(pre, scale=(0.75, 1.0), flip=False, jitter=0.0)
    if kind == "none":
        return eval_transform(pre)
    raise ValueError(f"unknown augmentation {kind!r}; use photo, light or none")


def tta_views(pre: Preprocessing, mode: str = "flip") -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """Deterministic test-time views of one image; their probabilities are averaged.

    "flip": center crop and its mirror. "multicrop": the center and four corner
    crops of the resized image, each also mirrored (10 views).
    """
    base = eval_transform(pre)
    views: list[Callable] = [base, lambda img: TF.horizontal_flip(base(img))]
    if mode == "flip":
        return views
    if mode != "multicrop":
        raise ValueError(f"unknown TTA mode {mode!r}; use 'flip' or 'multicrop'")
    resize_to = pre.resize_size()

    def corner(index: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def view(img: torch.Tensor) -> torch.Tensor:
            img = _resize_cover(img, resize_to, pre.interpolation)
            return TF.five_crop(img, list(pre.size))[index]

        return view

    corners = [corner(i) for i in range(4)]
    mirrored = [lambda img, v=v: TF.horizontal_flip(v(img)) for v in corners]
    return views + corners + mirrored
