"""Box arithmetic on `Tensor[N, 4]` boxes in (x1, y1, x2, y2) format, as torchvision.ops has it.

Boxes are corners in pixels (or in fractions of the image: the functions
do not care, as long as both arguments use the same units). A box with
x2 <= x1 or y2 <= y1 has zero area.
"""

from __future__ import annotations

import torch

__all__ = ["box_area", "box_iou", "paired_iou"]


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas `Tensor[N]` of `boxes Tensor[N, 4]` (x1, y1, x2, y2); inverted boxes count as 0."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def _intersection(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Overlap areas of boxes that broadcast against each other (..., 4) -> (...)."""
    top_left = torch.maximum(a[..., :2], b[..., :2])
    bottom_right = torch.minimum(a[..., 2:], b[..., 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every box of `a Tensor[N, 4]` with every box of `b Tensor[M, 4]`: `Tensor[N, M]`.

    Two empty boxes have IoU 0 (not NaN).
    """
    inter = _intersection(a[:, None, :], b[None, :, :])  # (N, M)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(inter.dtype).tiny), torch.zeros_like(inter))


def paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of `a[i]` with `b[i]` for two `Tensor[N, 4]`: `Tensor[N]` (the diagonal of `box_iou`, in O(N))."""
    inter = _intersection(a, b)
    union = box_area(a) + box_area(b) - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(inter.dtype).tiny), torch.zeros_like(inter))
