"""Box arithmetic on `Tensor[N, 4]` boxes in (x1, y1, x2, y2) format, as torchvision.ops has it.

Boxes are corners in pixels (or in fractions of the image: the functions
do not care, as long as both arguments use the same units). A box with
x2 <= x1 or y2 <= y1 has zero area. `box_convert` is the edge converter
for COCO (x, y, w, h) and YOLO (cx, cy, w, h) boxes; `nms` and
`batched_nms` are greedy non-maximum suppression in blocks, so memory
stays O(N * block) however many boxes come in.
"""

from __future__ import annotations

import torch

__all__ = ["batched_nms", "box_area", "box_convert", "box_iou", "clip_boxes", "decode_deltas", "encode_deltas",
           "nms", "paired_iou", "remove_small_boxes", "DELTA_WEIGHTS", "DELTA_CLIP"]

# R-CNN's box regression targets are scaled so their spread is near one: centre shifts x10, log sizes x5
# (Fast R-CNN's normalisation, as torchvision's detectors use it).
DELTA_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
DELTA_CLIP = 4.135166556742356  # log(1000 / 16): no predicted box grows more than ~62x its proposal


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


_FORMATS = ("xyxy", "xywh", "cxcywh")


def _to_xyxy(boxes: torch.Tensor, fmt: str) -> torch.Tensor:
    a, b, c, d = boxes.unbind(-1)
    if fmt == "xywh":  # (x, y, w, h): top-left corner and size
        return torch.stack([a, b, a + c, b + d], dim=-1)
    if fmt == "cxcywh":  # (cx, cy, w, h): centre and size
        return torch.stack([a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d], dim=-1)
    return boxes


def _from_xyxy(boxes: torch.Tensor, fmt: str) -> torch.Tensor:
    x1, y1, x2, y2 = boxes.unbind(-1)
    if fmt == "xywh":
        return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)
    if fmt == "cxcywh":
        return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)
    return boxes


def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
    """Boxes `Tensor[..., 4]` from `in_fmt` to `out_fmt`, each one of "xyxy", "xywh", "cxcywh".

    "xyxy" is corners (x1, y1, x2, y2), the library's own format; "xywh" is
    COCO's top-left corner and size; "cxcywh" is YOLO's centre and size (in
    whatever units the input uses: normalising is the caller's business).
    Always returns a new tensor.
    """
    for fmt in (in_fmt, out_fmt):
        if fmt not in _FORMATS:
            raise ValueError(f"unknown box format {fmt!r}; expected one of {', '.join(_FORMATS)}")
    if in_fmt == out_fmt:
        return boxes.clone()
    return _from_xyxy(_to_xyxy(boxes, in_fmt), out_fmt)


def clip_boxes(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`boxes Tensor[..., 4]` (xyxy) clipped to an image of `size = (height, width)`: a new tensor."""
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def remove_small_boxes(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """Indices `Tensor[K]` (int64, increasing) of the `boxes Tensor[N, 4]` whose width and height are both >= `min_size`."""
    wh = boxes[:, 2:] - boxes[:, :2]
    return torch.where((wh >= min_size).all(dim=1))[0]


# Non-maximum suppression -------------------------------------------------------------------------------------
#
# Greedy NMS visits boxes in decreasing score order and keeps a box unless a box kept before it
# overlaps it by IoU > threshold. We take the sorted boxes a block at a time:
#  (1) drop the block's boxes that a box kept so far suppresses. Only kept boxes that overlap a box
#      in x can suppress it, so the block is cut into tiles of neighbours in x, and each tile is
#      compared with the one contiguous run of the x1-sorted kept boxes it can reach (a tile x run
#      IoU matrix, small enough to stay in cache);
#  (2) resolve the survivors among themselves. With S[i, j] = "i suppresses j if i is kept" (i before
#      j), the greedy answer is the unique fixed point of keep[j] = not any_i(keep[i] and S[i, j]):
#      keep[j] depends only on earlier boxes, so iterating from "all kept" settles at least one more
#      leading box per round, and in practice it converges in a handful of rounds.
# Memory is O(block * kept) at worst, never N x N.

_BLOCK = 256
_TILE = 64
_DENSE_PAIRS = 1 << 16  # below this many block x kept pairs, one plain matrix is cheaper than tiles


def _raw_area(boxes: torch.Tensor) -> torch.Tensor:
    """Signed areas `Tensor[N]` (no clamping): the area NMS uses, so the IoU matches the reference bit for bit."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _threshold(iou_threshold: float, dtype: torch.dtype) -> torch.Tensor:
    """The largest `dtype` value t <= `iou_threshold`: for IoUs x in `dtype`, `x > t` is exactly `x > iou_threshold`.

    Comparing with the threshold rounded to nearest could flip IoUs that fall between the two.
    """
    t = torch.tensor(iou_threshold, dtype=dtype)
    if t.double().item() > iou_threshold:
        t = torch.nextafter(t, torch.tensor(float("-inf"), dtype=dtype))
    return t


def _overlaps(a: torch.Tensor, b: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """`Tensor[N, M]` bool: IoU(a[i], b[j]) > threshold, for `a Tensor[5, N]`, `b Tensor[5, M]`.

    Rows of `a` and `b` are (x1, y1, x2, y2, area); `threshold` is in the boxes' dtype (`_threshold`).
    """
    a, b = a[:, :, None], b[:, None, :]  # (5, N, 1), (5, 1, M)
    w = (torch.minimum(a[2], b[2]) - torch.maximum(a[0], b[0])).clamp_(min=0)  # (N, M)
    inter = (torch.minimum(a[3], b[3]) - torch.maximum(a[1], b[1])).clamp_(min=0).mul_(w)
    union = torch.add(a[4], b[4]).sub_(inter)
    return inter.div_(union) > threshold


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """`Tensor[N, M]` bool: a[i] == b[j] for group ids, or None when there are no groups."""
    return None if a is None else a[:, None] == b[None, :]


def _hits(a: torch.Tensor, ga: torch.Tensor | None, b: torch.Tensor, gb: torch.Tensor | None,
          threshold: torch.Tensor) -> torch.Tensor:
    """`Tensor[N, M]` bool: does b[j] overlap a[i] by more than `threshold`, within the same group?"""
    hit = _overlaps(a, b, threshold)
    same = _same(ga, gb)
    return hit if same is None else hit.logical_and_(same)


def _suppressed_by_kept(cols: torch.Tensor, groups: torch.Tensor | None, block: torch.Tensor, kept: torch.Tensor,
                        threshold: torch.Tensor) -> torch.Tensor:
    """`Tensor[B]` bool: is box `block[i]` suppressed by one of the boxes `kept Tensor[K]`?

    `cols Tensor[5, N]` is (x1, y1, x2, y2, area) of all boxes; `block` and `kept` are positions in it.
    Tiles of `_TILE` block boxes, neighbours in x, meet only the kept boxes whose x-range can reach theirs.
    """
    if block.shape[0] * kept.shape[0] <= _DENSE_PAIRS or threshold < 0:  # below 0, boxes apart suppress too
        return _hits(cols[:, block], None if groups is None else groups[block], cols[:, kept],
                     None if groups is None else groups[kept], threshold).any(dim=1)
    kept = kept[torch.argsort(cols[0, kept])]  # by x1
    kc, kg = cols[:, kept], None if groups is None else groups[kept]  # (5, K)
    reach = torch.cummax(kc[2], dim=0).values  # (K,) running max of x2, non-decreasing
    by_x = torch.argsort(cols[0, block])
    tiles = block[by_x].split(_TILE)
    firsts = torch.stack([t[0] for t in tiles])
    right = torch.stack([cols[2, t].max() for t in tiles])
    los = torch.searchsorted(reach, cols[0, firsts], right=True).tolist()  # first kept reaching past the tile
    his = torch.searchsorted(kc[0].contiguous(), right).tolist()  # kept starting left of the tile's end
    out = []
    for tile, lo, hi in zip(tiles, los, his):
        if hi <= lo:
            out.append(torch.zeros(tile.shape[0], dtype=torch.bool, device=cols.device))
            continue
        tg = None if groups is None else groups[tile]
        sg = None if kg is None else kg[lo:hi]
        out.append(_hits(cols[:, tile], tg, kc[:, lo:hi], sg, threshold).any(dim=1))
    return torch.cat(out)[torch.argsort(by_x)]


def _resolve(suppresses: torch.Tensor) -> torch.Tensor:
    """Greedy keep mask `Tensor[C]` for boxes in score order, given `suppresses Tensor[C, C]` (strictly upper)."""
    keep = torch.ones(suppresses.shape[0], dtype=torch.bool, device=suppresses.device)
    weights = suppresses.to(torch.float32)
    for _ in range(suppresses.shape[0]):
        new = (keep.to(torch.float32) @ weights) == 0  # (C,) no kept earlier box suppresses it
        if torch.equal(new, keep):
            break
        keep = new
    return keep


def _nms_sorted(boxes: torch.Tensor, groups: torch.Tensor | None, threshold: torch.Tensor,
                block: int) -> torch.Tensor:
    """Kept positions `Tensor[K]` (increasing) among `boxes Tensor[N, 4]` already in decreasing score order.

    Boxes with different `groups Tensor[N]` values never suppress each other (None: one group).
    """
    cols = torch.cat([boxes.t(), _raw_area(boxes)[None]]).contiguous()  # (5, N)
    kept = torch.zeros(0, dtype=torch.int64, device=boxes.device)
    for start in range(0, boxes.shape[0], block):
        cand = torch.arange(start, min(start + block, boxes.shape[0]), device=boxes.device)
        if kept.numel():
            cand = cand[~_suppressed_by_kept(cols, groups, cand, kept, threshold)]
        if not cand.numel():
            continue
        g = None if groups is None else groups[cand]
        sup = _hits(cols[:, cand], g, cols[:, cand], g, threshold).triu_(diagonal=1)  # (C, C)
        kept = torch.cat([kept, cand[_resolve(sup)]])
    return kept


def _nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor | None, iou_threshold: float,
         block: int) -> torch.Tensor:
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    if not boxes.is_floating_point():
        boxes = boxes.float()
    order = torch.sort(scores, descending=True, stable=True).indices
    groups = None if groups is None else groups[order]
    kept = _nms_sorted(boxes[order], groups, _threshold(iou_threshold, boxes.dtype).to(boxes.device), block)
    return order[kept]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, block: int = _BLOCK) -> torch.Tensor:
    """Greedy non-maximum suppression: indices `Tensor[K]` (int64) of the kept boxes, in decreasing score order.

    `boxes Tensor[N, 4]` are xyxy, `scores Tensor[N]`. A box is dropped when its IoU with a kept,
    higher-scoring box is > `iou_threshold`; equal scores keep their input order. Works a `block` of
    sorted boxes at a time, so memory is O(block * kept) at worst, not O(N^2).
    """
    return _nms(boxes, scores, None, iou_threshold, block)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float,
                block: int = _BLOCK) -> torch.Tensor:
    """Class-wise `nms`: boxes whose `idxs Tensor[N]` (int, e.g. class) differ never suppress each other.

    Returns indices `Tensor[K]` (int64) of the kept boxes in decreasing score order. One pass over all
    boxes with the suppression masked by "same class", so the IoUs are those of the original
    coordinates (no per-class coordinate offsets) and there is no Python loop over classes.
    """
    return _nms(boxes, scores, idxs, iou_threshold, block)


def _centres(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(centre x, centre y, width, height) of xyxy `boxes Tensor[N, 4]`."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h, w, h


def encode_deltas(proposals: torch.Tensor, targets: torch.Tensor,
                  weights: tuple[float, float, float, float] = DELTA_WEIGHTS) -> torch.Tensor:
    """R-CNN's regression targets `Tensor[N, 4]` (dx, dy, dw, dh) that move each proposal onto its target box.

    dx = wx (x_t - x_p) / w_p and dy likewise (the centre's shift in proposal widths),
    dw = ww log(w_t / w_p) and dh likewise; both box sets are xyxy with positive sizes.
    """
    px, py, pw, ph = _centres(proposals.float())
    tx, ty, tw, th = _centres(targets.float())
    wx, wy, ww, wh = weights
    return torch.stack([wx * (tx - px) / pw, wy * (ty - py) / ph, ww * torch.log(tw / pw), wh * torch.log(th / ph)], 1)


def decode_deltas(deltas: torch.Tensor, proposals: torch.Tensor,
                  weights: tuple[float, float, float, float] = DELTA_WEIGHTS, clip: float = DELTA_CLIP) -> torch.Tensor:
    """The boxes `Tensor[N, 4]` xyxy that `deltas Tensor[N, 4]` make of `proposals`: `encode_deltas` undone.

    The log sizes are clipped at `clip`, so an untrained regressor cannot overflow.
    """
    px, py, pw, ph = _centres(proposals.float())
    wx, wy, ww, wh = weights
    cx, cy = px + deltas[:, 0] / wx * pw, py + deltas[:, 1] / wy * ph
    w = pw * torch.exp((deltas[:, 2] / ww).clamp(max=clip))
    h = ph * torch.exp((deltas[:, 3] / wh).clamp(max=clip))
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], 1)
