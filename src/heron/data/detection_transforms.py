"""Box-aware augmentation and the detection Dataset, on torchvision transforms v2.

The image and its boxes go through the same transform: a flip, a crop or a
resize moves the boxes with the pixels (`tv_tensors.BoundingBoxes`), and
`v2.SanitizeBoundingBoxes` drops boxes left with (almost) no area after a
crop, with their labels. Every transform ends in a plain resize of the whole
image to `size` (H, W), aspect ratio not kept (no letterbox); `scale_boxes`
maps boxes between that size and the original image.

`DetectionImages` follows `heron.data.loader.ImageFiles`: a file that fails
to decode comes back as an error record rather than an exception, and
`detection_collate` drops it from the batch and passes the message on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from heron.data.detection import Annotation
from heron.data.images import load_image
from heron.data.loader import image_loader
from heron.errors import ImageError

__all__ = [
    "DetectionImages",
    "detection_collate",
    "detection_eval_transform",
    "detection_loader",
    "detection_train_transform",
    "scale_boxes",
]

Size = tuple[int, int]  # (height, width)
Transform = Callable  # (tv_tensors.Image, target dict) -> (image, target dict)


def _final(size: Size) -> list:
    """The common tail: squash to `size`, then drop boxes left without area."""
    return [v2.Resize(tuple(size), antialias=True), v2.ClampBoundingBoxes(),
            v2.SanitizeBoundingBoxes(min_size=1.0)]


def detection_train_transform(size: Size, hflip: float = 0.5, scale: tuple[float, float] | None = (0.5, 1.0),
                              ratio: tuple[float, float] = (3 / 4, 4 / 3), jitter: float = 0.2) -> v2.Compose:
    """Training augmentation: flip, random crop of `scale` of the area, colour jitter, resize to `size` (H, W).

    The crop (`v2.RandomResizedCrop`, aspect `ratio`) moves and clips the
    boxes; boxes cropped out are dropped. `scale=None` skips the crop,
    `jitter=0` the colour change (brightness, contrast, saturation, and a
    quarter of it for hue). Called as `t(image, target)` with a
    `tv_tensors.Image` and `{"boxes": BoundingBoxes, "labels": ...}`;
    randomness comes from torch's global RNG (seeded per worker by DataLoader).
    """
    steps: list = []
    if hflip:
        steps.append(v2.RandomHorizontalFlip(p=hflip))
    if scale is not None:
        steps.append(v2.RandomResizedCrop(tuple(size), scale=tuple(scale), ratio=tuple(ratio), antialias=True))
    if jitter:
        steps.append(v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=min(jitter / 4, 0.5)))
    return v2.Compose(steps + _final(size))


def detection_eval_transform(size: Size) -> v2.Compose:
    """Evaluation: the resize of the whole image to `size` (H, W) alone (boxes follow)."""
    return v2.Compose(_final(size))


def scale_boxes(boxes, from_size: Size, to_size: Size):
    """Boxes xyxy `(..., 4)` in an image of `from_size` (H, W) -> the same boxes in `to_size` (H, W).

    E.g. predictions at the network's size back to the original image:
    `scale_boxes(pred, (640, 640), (ann.height, ann.width))`. Works on
    tensors and arrays; returns a new one of the same kind.
    """
    sy, sx = to_size[0] / from_size[0], to_size[1] / from_size[1]
    if isinstance(boxes, torch.Tensor):
        factor = torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype if boxes.is_floating_point() else torch.float32,
                              device=boxes.device)
        return boxes * factor
    return np.asarray(boxes, np.float32) * np.array([sx, sy, sx, sy], np.float32)



class DetectionImages(Dataset):
    """Annotations as training items: `(image uint8 (3, H, W) | None, target | None, index, error | None)`.

    `target` is `{"boxes": float32 (n, 4) xyxy in the transformed image's
    pixels, "labels": int64 (n,)}`. A file that cannot be decoded gives
    `(None, None, index, message)`, which `detection_collate` passes on.
    `min_size` (H, W) lets JPEGs decode in draft mode at a reduced scale no
    smaller than it (use the network size for evaluation); the boxes are
    rescaled to the decoded size, which needs the annotation's width/height.
    """

    def __init__(self, annotations: Sequence[Annotation], transform: Transform,
                 min_size: int | Size | None = None) -> None:
        self.annotations = list(annotations)
        self.transform = transform
        self.min_size = min_size

    def __len__(self) -> int:
        return len(self.annotations)

    def _boxes(self, ann: Annotation, height: int, width: int) -> torch.Tensor:
        """The annotation's boxes in the decoded image's pixels (draft decoding may shrink it)."""
        boxes = torch.as_tensor(np.asarray(ann.boxes, np.float32).reshape(-1, 4))
        if ann.width and ann.height and (ann.width, ann.height) != (width, height):
            boxes = scale_boxes(boxes, (ann.height, ann.width), (height, width))
        return boxes

    def __getitem__(self, index: int):
        ann = self.annotations[index]
        min_size = self.min_size if ann.width and ann.height else None
        try:
            img = load_image(ann.path, min_size=min_size)
        except ImageError as err:
            return None, None, index, str(err)
        height, width = img.shape[-2:]
        boxes = tv_tensors.BoundingBoxes(self._boxes(ann, height, width), format="XYXY",
                                         canvas_size=(height, width))
        target = {"boxes": boxes, "labels": torch.as_tensor(np.asarray(ann.labels, np.int64))}
        out, target = self.transform(tv_tensors.Image(img), target)
        target = {"boxes": target["boxes"].as_subclass(torch.Tensor).float().reshape(-1, 4),
                  "labels": target["labels"].as_subclass(torch.Tensor).long()}
        return out.as_subclass(torch.Tensor), target, index, None


def detection_collate(batch):
    """Stack the good items; pass the bad ones along: (images (B, 3, H, W) | None, targets, indices (B,), errors).

    `targets` is a list of B dicts (boxes vary in number per image);
    `errors` is `[(index, message)]` for the items that failed to decode.
    """
    good = [b for b in batch if b[0] is not None]
    errors = [(b[2], b[3]) for b in batch if b[0] is None]
    if not good:
        return None, [], torch.empty(0, dtype=torch.long), errors
    images = torch.stack([b[0] for b in good])
    indices = torch.as_tensor([b[2] for b in good], dtype=torch.long)
    return images, [b[1] for b in good], indices, errors


def detection_loader(dataset: Dataset, batch_size: int = 16, shuffle: bool = False, workers: int | None = None,
                     generator: torch.Generator | None = None, drop_last: bool = False) -> DataLoader:
    """`heron.data.loader.image_loader` over `DetectionImages`, batched by `detection_collate`."""
    return image_loader(dataset, batch_size, shuffle, workers, generator, collate_fn=detection_collate,
                        drop_last=drop_last)
