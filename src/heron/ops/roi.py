"""Region of interest pooling: every proposed box cut from one shared feature map to a fixed grid.

Fast R-CNN's trick: the convolutional trunk runs once per image, and each
proposal becomes an `output_size` grid of maxima over its part of the map,
so one head classifies all proposals at once. The arithmetic is the original
layer's (and torchvision's `roi_pool`): box corners scaled by
`spatial_scale` and rounded to map cells, the box at least one cell on each
side, bin edges at floor/ceil of equal fractions, and an empty bin (a box
past the map's edge) 0.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

__all__ = ["roi_pool"]


def _cells(rois: torch.Tensor, spatial_scale: float) -> torch.Tensor:
    """Box corners `(K, 4)` in map cells, rounded half away from zero as the original layer does."""
    scaled = rois[:, 1:].double() * spatial_scale
    return torch.sign(scaled) * torch.floor(scaled.abs() + 0.5)


def roi_pool(features: torch.Tensor, rois: torch.Tensor, output_size: int | tuple[int, int],
             spatial_scale: float = 1.0) -> torch.Tensor:
    """Max-pool each box of `rois Tensor[K, 5]` (batch index, x1, y1, x2, y2 in image pixels) on
    `features Tensor[N, C, H, W]` into `Tensor[K, C, out_h, out_w]`.

    `spatial_scale`: map cells per image pixel (1/32 for a stride-32 trunk).
    Each box is padded with -inf to its full extent where it leaves the map,
    so adaptive max pooling sees the same bins as the unclipped box; bins that
    hold no map cell come out 0.
    """
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    k, (_, c, height, width) = len(rois), features.shape
    out = features.new_zeros(k, c, out_h, out_w)
    if k == 0:
        return out
    cells = _cells(rois, spatial_scale).long().tolist()
    images = rois[:, 0].long().tolist()
    for i, (n, (x1, y1, x2, y2)) in enumerate(zip(images, cells)):
        box_w, box_h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        region = features.new_full((c, box_h, box_w), -math.inf)  # the whole box, outside the map -inf
        top, left = max(y1, 0), max(x1, 0)
        bottom, right = min(y1 + box_h, height), min(x1 + box_w, width)
        if bottom > top and right > left:
            region[:, top - y1 : bottom - y1, left - x1 : right - x1] = features[n, :, top:bottom, left:right]
        pooled = F.adaptive_max_pool2d(region[None], (out_h, out_w))[0]  # (C, out_h, out_w)
        out[i] = torch.where(torch.isinf(pooled), torch.zeros_like(pooled), pooled)
    return out
