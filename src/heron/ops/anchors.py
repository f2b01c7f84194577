"""Anchor shapes for one-stage detectors: IoU of box shapes and k-means over a data set's boxes.

A shape is a (width, height) pair; two shapes are compared as boxes sharing a
centre, so only their sizes matter. k-means with distance 1 - IoU (rather than
Euclidean distance on w, h) does not let large boxes dominate: a 10 px error
matters for a 20 px box and not for a 400 px one.
"""

from __future__ import annotations

import torch

__all__ = ["kmeans_anchors", "mean_best_iou", "shape_iou"]


def shape_iou(wh_a: torch.Tensor, wh_b: torch.Tensor) -> torch.Tensor:
    """IoU `Tensor[N, M]` of shapes `wh_a Tensor[N, 2]` and `wh_b Tensor[M, 2]` (width, height), centres aligned.

    Two empty shapes have IoU 0 (not NaN).
    """
    inter = torch.minimum(wh_a[:, None, 0], wh_b[None, :, 0]).clamp(min=0) * \
        torch.minimum(wh_a[:, None, 1], wh_b[None, :, 1]).clamp(min=0)  # (N, M)
    area_a = wh_a[:, 0].clamp(min=0) * wh_a[:, 1].clamp(min=0)
    area_b = wh_b[:, 0].clamp(min=0) * wh_b[:, 1].clamp(min=0)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(inter.dtype).tiny), torch.zeros_like(inter))


def mean_best_iou(wh: torch.Tensor, anchors: torch.Tensor) -> float:
    """Mean over the shapes `wh Tensor[N, 2]` of the IoU with their best anchor of `anchors Tensor[K, 2]`.

    The "average IoU" by which anchor sets are compared: 1 means every box has an anchor of its exact shape.
    """
    return shape_iou(wh.float(), anchors.float()).max(dim=1).values.mean().item()


def _check(wh: torch.Tensor, k: int) -> torch.Tensor:
    """The usable shapes of `wh Tensor[N, 2]` (width and height > 0) as float, or a ValueError naming the problem."""
    if wh.ndim != 2 or wh.shape[1] != 2:
        raise ValueError(f"kmeans_anchors needs box shapes as a Tensor[N, 2] of (width, height); got {tuple(wh.shape)}")
    if k < 1:
        raise ValueError(f"kmeans_anchors needs k >= 1 anchors; got k={k}")
    wh = wh.float()
    wh = wh[(wh > 0).all(dim=1)]
    distinct = torch.unique(wh, dim=0).shape[0]
    if distinct < k:
        raise ValueError(f"kmeans_anchors: {distinct} distinct box shapes with width and height > 0, "
                         f"fewer than k={k} anchors; use a smaller k or more boxes")
    return wh


def _init_plus_plus(wh: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: `Tensor[k, 2]` shapes of `wh`, each next one drawn with weight (1 - best IoU)^2."""
    first = torch.randint(0, wh.shape[0], (1,), generator=gen)
    centres = wh[first]
    for _ in range(1, k):
        far = (1 - shape_iou(wh, centres).max(dim=1).values).clamp(min=0) ** 2  # (N,) 0 for a chosen shape
        pick = torch.multinomial(far.double(), 1, generator=gen)
        centres = torch.cat([centres, wh[pick]])
    return centres


def _update(wh: torch.Tensor, assign: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """New `Tensor[k, 2]` centres: per-coordinate median of each cluster; an empty one takes the worst-fit shape."""
    new = centres.clone()
    worst = (1 - shape_iou(wh, centres).max(dim=1).values)  # (N,) how badly each shape fits
    for c in range(centres.shape[0]):
        members = wh[assign == c]
        if members.shape[0]:
            new[c] = members.median(dim=0).values
        else:  # re-seed where the current anchors fit worst, and don't pick that shape twice
            i = int(torch.argmax(worst))
            new[c], worst[i] = wh[i], -1.0
    return new


def kmeans_anchors(wh: torch.Tensor, k: int, seed: int = 0, iters: int = 100) -> torch.Tensor:
    """`k` anchor shapes `Tensor[k, 2]` (width, height) for the box shapes `wh Tensor[N, 2]`, by area ascending.

    k-means with distance 1 - `shape_iou`, seeded k-means++ style from `torch.Generator(seed)`, so the
    same inputs and seed give the same anchors. Each centre moves to the per-coordinate *median* of its
    members: the mean is not what minimises a 1 - IoU distance either, and the median is not dragged by
    a few huge or sliver boxes, which annotation sets always have. A cluster left empty is re-seeded
    with the shape the anchors fit worst. Stops when assignments stop changing, or after `iters`
    rounds. Shapes with a width or height <= 0 are ignored; fewer distinct shapes than `k`, or k < 1,
    is a ValueError.
    """
    wh = _check(wh, k)
    gen = torch.Generator().manual_seed(seed)
    centres = _init_plus_plus(wh, k, gen)
    assign = None
    for _ in range(iters):
        new_assign = shape_iou(wh, centres).argmax(dim=1)  # (N,) nearest = highest IoU
        if assign is not None and torch.equal(new_assign, assign):
            break
        assign = new_assign
        centres = _update(wh, assign, centres)
    return centres[torch.argsort(centres[:, 0] * centres[:, 1], stable=True)]
