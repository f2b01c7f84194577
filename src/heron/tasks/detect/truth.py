"""An annotated image's true boxes as every detector needs them: sizes, input pixels, mirror images, labels."""

from __future__ import annotations

import numpy as np
import torch

from heron.data.images import image_size

__all__ = ["annotation_size", "input_boxes", "labels_of", "mirror_boxes", "truth_dict"]


def annotation_size(annotation) -> tuple[int, int]:
    """(width, height) of an annotated image, from its annotation or, if unknown, its header."""
    if annotation.width and annotation.height:
        return int(annotation.width), int(annotation.height)
    return image_size(annotation.path)


def input_boxes(annotation, input_size: tuple[int, int]) -> torch.Tensor:
    """The annotation's boxes `(n, 4)` in the pixels of the squashed network input `(H, W)`."""
    width, height = annotation_size(annotation)
    factor = torch.tensor([input_size[1] / width, input_size[0] / height] * 2, dtype=torch.float32)
    return torch.as_tensor(np.asarray(annotation.boxes, dtype=np.float32)).reshape(-1, 4) * factor


def labels_of(annotation) -> torch.Tensor:
    """The annotation's class ids `(n,)` int64."""
    return torch.as_tensor(np.asarray(annotation.labels, dtype=np.int64)).reshape(-1)


def mirror_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    """Boxes `(..., 4)` xyxy of the horizontally flipped image `width` pixels wide."""
    return torch.stack([width - boxes[..., 2], boxes[..., 1], width - boxes[..., 0], boxes[..., 3]], -1)


def truth_dict(annotation, remap: np.ndarray | None = None) -> dict:
    """An annotation's boxes (original pixels) and labels as the metrics take them; `remap` maps its
    class ids to the run's."""
    labels = labels_of(annotation)
    return {"boxes": torch.as_tensor(np.asarray(annotation.boxes, dtype=np.float32)).reshape(-1, 4),
            "labels": labels if remap is None else torch.as_tensor(remap[labels.numpy()])}
