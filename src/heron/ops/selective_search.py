"""Object proposals by selective search (Uijlings et al., IJCV 2013), for the R-CNN family of detectors.

Selective search over-segments the image (`skimage.segmentation.felzenszwalb`),
then groups it bottom-up: the two adjacent regions that are most similar are
merged into one, over and over, until the whole image is one region. Every
region formed along the way, the initial segments included, is a proposal with
its bounding box. Objects of every size show up somewhere in that hierarchy,
so a few thousand boxes cover nearly all of them.

Similarity of regions i and j is the sum of the chosen measures, each in [0, 1]:

- C, colour: intersection (sum of minima) of L1-normalised histograms with 25
  bins per channel of the colour space;
- T, texture: intersection of L1-normalised histograms of gaussian derivatives
  (sigma 1) in 8 orientations (every 45 degrees; the positive part of each
  directional derivative, so opposite directions are told apart), each
  rescaled to 0..1 over the image and binned into 10 bins, per channel:
  8 x 10 x channels bins, as in the paper;
- S, size: 1 - (size_i + size_j) / size_image, so small regions merge first;
- F, fill: 1 - (bbox_size_ij - size_i - size_j) / size_image, where bbox_size_ij
  is the area of the box around both, so regions that fill each other's gaps
  merge first.

A merged region's histograms are the size-weighted average of its parts', its
neighbours the union of theirs. Neighbours are 4-connected pixels of different
segments.

One strategy is a colour space, a felzenszwalb `k` and a similarity set. The
modes (the paper's diversification):

- "single": HSV, k = 100, C+T+S+F (1 strategy; the paper's best single one);
- "fast": HSV and Lab x k in {50, 100} x {C+T+S+F, T+S+F} (8 strategies; the
  paper's "Selective Search Fast");
- "quality": HSV, Lab, rgI (normalised r and g plus intensity), H (hue) and I
  (intensity) x k in {50, 100, 150, 300} x {C+T+S+F, T+S+F, F, S}
  (80 strategies; the paper's "Selective Search Quality").

Segmentations and histograms are shared between the strategies that can share
them. On a 416 x 416 photo on two CPU cores a call takes about 0.4 s
("single"), 1.6 s ("fast") and 9 s ("quality"); felzenszwalb is about half of it.

The paper's k is in pixels of PASCAL images (about 500 x 375). Felzenszwalb's
threshold k / |segment| makes segment sizes grow with k, so felzenszwalb gets
`scale = min_size = k * a`, with a = (image area / 500 x 375) clipped to
[1/16, 16]: a 416 x 416 image is segmented like a PASCAL one, a 128 px image
into finer segments and a 2000 px one into coarser ones, and the number of
segments (which sets the time of the grouping) stays in the hundreds.

Ranking, as in the paper: within one strategy the region formed last (the
whole image) has position 1, the one before it 2, and so on down to the
initial segments; each region's value is position * RND with RND uniform in
[0, 1) from `numpy.random.default_rng(seed)`. All strategies' regions are sorted
by value ascending, duplicate boxes dropped (the best-valued copy stays), boxes
narrower or shorter than `min_box` dropped, and the first `max_proposals` kept.
The randomness mixes large and small regions near the top of the list and
ranks a box found by several strategies higher.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import color
from skimage.segmentation import felzenszwalb

__all__ = ["MODES", "proposal_recall", "selective_search"]

_COLOUR_BINS = 25
_TEXTURE_BINS = 10
_ORIENTATIONS = 8
_REFERENCE_AREA = 500 * 375  # PASCAL VOC image size, for which the paper's k values are given

# similarity sets: which of colour, texture, size, fill are summed
_CTSF, _TSF, _F, _S = "CTSF", "TSF", "F", "S"

MODES: dict[str, list[tuple[str, int, str]]] = {
    "single": [("hsv", 100, _CTSF)],
    "fast": [(space, k, sims) for space in ("hsv", "lab") for k in (50, 100) for sims in (_CTSF, _TSF)],
    "quality": [(space, k, sims) for space in ("hsv", "lab", "rgi", "h", "i") for k in (50, 100, 150, 300)
                for sims in (_CTSF, _TSF, _F, _S)],
}
"""Strategies of each mode: (colour space, felzenszwalb k, similarity set) in the order they run."""


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """`image` uint8 (H, W, 3), (H, W, 4) or grey (H, W) as uint8 (H, W, 3), or a ValueError naming the shape."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
        raise ValueError(f"selective_search needs an (H, W, 3) or (H, W) image; got shape {image.shape}")
    image = image[:, :, :3]
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return image


def _colour_space(rgb: np.ndarray, space: str) -> np.ndarray:
    """`rgb` uint8 (H, W, 3) in `space`, float32 (H, W, C) with every channel scaled to [0, 1]."""
    x = rgb.astype(np.float32) / 255
    if space == "rgb":
        out = x
    elif space == "hsv":
        out = color.rgb2hsv(x)
    elif space == "lab":
        lab = color.rgb2lab(x)
        out = np.stack([lab[..., 0] / 100, (lab[..., 1] + 128) / 255, (lab[..., 2] + 128) / 255], axis=-1)
    elif space == "rgi":
        total = x.sum(axis=-1, keepdims=True)
        rg = np.where(total > 0, x[..., :2] / np.maximum(total, 1e-6), 1 / 3)
        out = np.concatenate([rg, total / 3], axis=-1)
    elif space == "h":
        out = color.rgb2hsv(x)[..., :1]
    elif space == "i":
        out = x.mean(axis=-1, keepdims=True)
    else:
        raise ValueError(f"unknown colour space {space!r}; use rgb, hsv, lab, rgi, h or i")
    return np.clip(out, 0, 1).astype(np.float32)


def _segment(img: np.ndarray, k: int) -> np.ndarray:
    """Felzenszwalb labels int64 (H, W), 0..n-1, with `scale = min_size = k` adapted to the image area."""
    a = float(np.clip(img.shape[0] * img.shape[1] / _REFERENCE_AREA, 1 / 16, 16))
    chan = img[..., 0] if img.shape[2] == 1 else img
    labels = felzenszwalb(chan, scale=k * a, sigma=0.8, min_size=max(1, round(k * a)),
                          channel_axis=None if chan.ndim == 2 else -1)
    _, labels = np.unique(labels, return_inverse=True)  # dense 0..n-1
    return labels.reshape(img.shape[:2]).astype(np.int64)


def _histograms(labels: np.ndarray, bins: np.ndarray, n: int, per_map: int) -> np.ndarray:
    """L1-normalised histograms float32 (n, maps * per_map): `bins` int (maps, H, W) counted per segment label."""
    maps = bins.shape[0]
    offsets = (np.arange(maps) * per_map)[:, None, None]
    index = labels[None] * (maps * per_map) + offsets + bins
    hist = np.bincount(index.ravel(), minlength=n * maps * per_map).reshape(n, maps * per_map)
    return (hist / np.maximum(hist.sum(axis=1, keepdims=True), 1)).astype(np.float32)


def _colour_histograms(img: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Colour histograms (n, 25 * C) of the segments `labels` of `img` float (H, W, C) in [0, 1]."""
    bins = np.minimum((img * _COLOUR_BINS).astype(np.int64), _COLOUR_BINS - 1)
    return _histograms(labels, np.moveaxis(bins, -1, 0), n, _COLOUR_BINS)


def _texture_histograms(img: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Texture histograms (n, 8 * 10 * C): gaussian derivatives (sigma 1) in 8 orientations, 10 bins, per channel."""
    angles = np.arange(_ORIENTATIONS) * (2 * np.pi / _ORIENTATIONS)
    bins = []
    for c in range(img.shape[2]):
        gy = ndimage.gaussian_filter(img[..., c], sigma=1.0, order=(1, 0))
        gx = ndimage.gaussian_filter(img[..., c], sigma=1.0, order=(0, 1))
        for t in angles:
            r = np.maximum(np.cos(t) * gx + np.sin(t) * gy, 0)
            top = r.max()
            scaled = r / top if top > 0 else r
            bins.append(np.minimum((scaled * _TEXTURE_BINS).astype(np.int64), _TEXTURE_BINS - 1))
    return _histograms(labels, np.stack(bins), n, _TEXTURE_BINS)


def _boxes_and_sizes(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per segment: box int64 (n, 4) x1, y1, x2, y2 (x2, y2 exclusive) and pixel count int64 (n,)."""
    boxes = np.zeros((n, 4), np.int64)
    for i, sl in enumerate(ndimage.find_objects(labels + 1)):
        if sl is not None:
            boxes[i] = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
    return boxes, np.bincount(labels.ravel(), minlength=n).astype(np.int64)


def _neighbour_pairs(labels: np.ndarray) -> np.ndarray:
    """Unique pairs int64 (P, 2), a < b, of segments that touch (4-connected pixels)."""
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
    keep = a != b
    lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    n = int(labels.max()) + 1
    codes = np.unique(lo * n + hi)
    return np.stack([codes // n, codes % n], axis=1)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection of histograms `a` (..., D) and `b` (..., D): sum of the bin-wise minima (1 for equal L1 ones)."""
    return np.minimum(a, b).sum(axis=-1)


def _size_similarity(size_i, size_j, size_image: int):
    """1 - (size_i + size_j) / size_image: near 1 for two small regions, so small ones merge first."""
    return 1 - (np.asarray(size_i) + np.asarray(size_j)) / size_image


def _fill_similarity(box_i, box_j, size_i, size_j, size_image: int):
    """1 - (area of the box around both - size_i - size_j) / size_image: 1 when the two fill their joint box."""
    box_i, box_j = np.asarray(box_i), np.asarray(box_j)
    x1 = np.minimum(box_i[..., 0], box_j[..., 0])
    y1 = np.minimum(box_i[..., 1], box_j[..., 1])
    x2 = np.maximum(box_i[..., 2], box_j[..., 2])
    y2 = np.maximum(box_i[..., 3], box_j[..., 3])
    joint = (x2 - x1) * (y2 - y1)
    return 1 - (joint - np.asarray(size_i) - np.asarray(size_j)) / size_image


@dataclass
class _Regions:
    """Every region of one grouping, indexed by creation order; rows past `count` are free space for merges."""

    colour: np.ndarray | None  # (capacity, Dc) histograms, None when colour is not used
    texture: np.ndarray | None  # (capacity, Dt)
    sizes: np.ndarray  # (capacity,) pixels
    boxes: np.ndarray  # (capacity, 4) x1, y1, x2, y2
    size_image: int
    count: int

    @classmethod
    def start(cls, labels: np.ndarray, colour: np.ndarray | None, texture: np.ndarray | None) -> _Regions:
        """The initial segments of `labels`, with room for the n - 1 merges that follow."""
        n = int(labels.max()) + 1
        capacity = 2 * n - 1
        boxes, sizes = _boxes_and_sizes(labels, n)

        def grow(x: np.ndarray | None) -> np.ndarray | None:
            if x is None:
                return None
            out = np.zeros((capacity,) + x.shape[1:], x.dtype)
            out[:n] = x
            return out
        return cls(grow(colour), grow(texture), grow(sizes), grow(boxes), labels.size, n)

    def similarity(self, i: int | np.ndarray, j: np.ndarray, sims: str) -> np.ndarray:
        """Similarity (len(j),) of region(s) `i` with regions `j`: the sum of the measures named in `sims`."""
        total = np.zeros(len(j), np.float64)
        if "C" in sims:
            total += _intersection(self.colour[i], self.colour[j])
        if "T" in sims:
            total += _intersection(self.texture[i], self.texture[j])
        if "S" in sims:
            total += _size_similarity(self.sizes[i], self.sizes[j], self.size_image)
        if "F" in sims:
            total += _fill_similarity(self.boxes[i], self.boxes[j], self.sizes[i], self.sizes[j], self.size_image)
        return total

    def merge(self, i: int, j: int) -> int:
        """Form the union of regions i and j as a new region; returns its index."""
        t = self.count
        si, sj = self.sizes[i], self.sizes[j]
        for hist in (self.colour, self.texture):
            if hist is not None:
                hist[t] = (si * hist[i] + sj * hist[j]) / (si + sj)
        self.sizes[t] = si + sj
        bi, bj = self.boxes[i], self.boxes[j]
        self.boxes[t] = (min(bi[0], bj[0]), min(bi[1], bj[1]), max(bi[2], bj[2]), max(bi[3], bj[3]))
        self.count += 1
        return t


def _group(labels: np.ndarray, pairs: np.ndarray, colour: np.ndarray | None, texture: np.ndarray | None,
           sims: str) -> np.ndarray:
    """Hierarchical grouping of the segments `labels`: boxes int64 (R, 4) of every region, in creation order.

    Greedy: the most similar touching pair merges, until no pair is left. A heap holds pair similarities;
    a pair whose region has since been merged away is skipped when popped (regions never change once formed,
    so a pair of live regions still has the similarity it was pushed with).
    """
    regions = _Regions.start(labels, colour if "C" in sims else None, texture if "T" in sims else None)
    n = regions.count
    neighbours: list[set[int]] = [set() for _ in range(2 * n - 1)]
    for a, b in pairs.tolist():
        neighbours[a].add(b)
        neighbours[b].add(a)
    alive = np.zeros(2 * n - 1, bool)
    alive[:n] = True
    if len(pairs):
        s = regions.similarity(pairs[:, 0], pairs[:, 1], sims)
        heap = [(-v, a, b) for v, (a, b) in zip(s.tolist(), pairs.tolist())]
    else:
        heap = []
    heapq.heapify(heap)
    while heap:
        _, i, j = heapq.heappop(heap)
        if not (alive[i] and alive[j]):
            continue
        t = regions.merge(i, j)
        alive[i] = alive[j] = False
        alive[t] = True
        around = (neighbours[i] | neighbours[j]) - {i, j}
        neighbours[t] = around
        for k in around:
            neighbours[k] -= {i, j}
            neighbours[k].add(t)
        if around:
            ks = np.fromiter(around, np.int64, len(around))
            for v, k in zip(regions.similarity(t, ks, sims).tolist(), ks.tolist()):
                heapq.heappush(heap, (-v, k, t))
    return regions.boxes[:regions.count]


def _strategy_boxes(rgb: np.ndarray, strategies: list[tuple[str, int, str]]) -> list[np.ndarray]:
    """Boxes (R, 4) of every region of each strategy, in creation order; segmentations and histograms are shared."""
    out = []
    cache: dict = {}
    for space, k, sims in strategies:
        if space not in cache:
            cache[space] = (_colour_space(rgb, space), {})
        img, per_k = cache[space]
        if k not in per_k:
            labels = _segment(img, k)
            per_k[k] = (labels, _neighbour_pairs(labels), {})
        labels, pairs, hists = per_k[k]
        n = int(labels.max()) + 1
        if "C" in sims and "colour" not in hists:
            hists["colour"] = _colour_histograms(img, labels, n)
        if "T" in sims and "texture" not in hists:
            hists["texture"] = _texture_histograms(img, labels, n)
        out.append(_group(labels, pairs, hists.get("colour"), hists.get("texture"), sims))
    return out


def selective_search(image: np.ndarray, *, mode: str = "fast", max_proposals: int | None = 2000,
                     min_box: int = 4, seed: int = 0) -> np.ndarray:
    """Ranked object proposals for `image` uint8 (H, W, 3) (or (H, W) grey): float32 (K, 4) boxes x1, y1, x2, y2
    in pixels (x2 = last column + 1, i.e. the box of pixel columns x1..x2-1 has width x2 - x1), best first,
    duplicates removed.

    `mode` is "single", "fast" or "quality" (see the module docstring and `MODES`); the ranking draws from
    `numpy.random.default_rng(seed)`, so the same image, mode and seed give the same boxes. Boxes narrower or
    shorter than `min_box` pixels are dropped; at most `max_proposals` are kept (None: all).
    """
    if mode not in MODES:
        raise ValueError(f"unknown selective_search mode {mode!r}; use one of {sorted(MODES)}")
    return _rank(_strategy_boxes(_as_rgb(image), MODES[mode]), seed, min_box, max_proposals)


def _rank(hierarchies: list[np.ndarray], seed: int, min_box: int, max_proposals: int | None) -> np.ndarray:
    """All strategies' boxes as float32 (K, 4), best first: value position * RND ascending, then deduplicated.

    `hierarchies[s]` holds strategy s's boxes in creation order, so its last box has position 1. RND is drawn
    from `default_rng(seed)`, strategy after strategy. A box found twice keeps its best place.
    """
    rng = np.random.default_rng(seed)
    values = [np.arange(len(found), 0, -1, dtype=np.float64) * rng.random(len(found)) for found in hierarchies]
    boxes = np.concatenate(hierarchies)[np.argsort(np.concatenate(values), kind="stable")]
    _, first = np.unique(boxes, axis=0, return_index=True)
    boxes = boxes[np.sort(first)]
    wide = ((boxes[:, 2] - boxes[:, 0]) >= min_box) & ((boxes[:, 3] - boxes[:, 1]) >= min_box)
    return boxes[wide][:max_proposals].astype(np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (N, M) of xyxy boxes `a` (N, 4) and `b` (M, 4); empty boxes give 0."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def proposal_recall(proposals: list[np.ndarray], truths: list[np.ndarray], counts=(100, 500, 2000),
                    iou: float = 0.5) -> dict[int, float]:
    """Share of true boxes (over all images) that some of the first `count` proposals of their image covers at
    IoU >= iou.

    `proposals[i]` (K, 4) and `truths[i]` (n, 4) are xyxy boxes of image i; the answer is {count: recall}
    (0.0 for every count when there is no true box at all).
    """
    if len(proposals) != len(truths):
        raise ValueError(f"proposal_recall needs one proposal array per image; got {len(proposals)} "
                         f"proposal arrays for {len(truths)} images")
    total = sum(len(t) for t in truths)
    found = dict.fromkeys(counts, 0)
    for props, true in zip(proposals, truths):
        props = np.asarray(props, np.float64).reshape(-1, 4)
        true = np.asarray(true, np.float64).reshape(-1, 4)
        if not len(true):
            continue
        overlap = _iou(true, props)  # (n, K)
        for c in counts:
            found[c] += int((overlap[:, :c] >= iou).any(axis=1).sum())
    return {c: found[c] / total if total else 0.0 for c in counts}
