"""Metric-learning losses for face embeddings: triplet, mined triplet, contrastive, verification head.

Embeddings come from the face encoder (L2-normalised, float32). The triplet
loss is the one in the course notes (FaceNet, Schroff et al. 2015):

    J = sum_i max(||f(A_i) - f(P_i)||^2 - ||f(A_i) - f(N_i)||^2 + alpha, 0)

with squared Euclidean distances. `batch_triplet_loss` builds the triplets
inside a P x K batch (see `heron.tasks.faces.sampling.PKSampler`) from masks
over the N x N distance matrix, with no Python loop over samples, so it runs
the same on CPU and CUDA.

Euclidean distances go through `_safe_sqrt`: the gradient of sqrt at 0 is
infinite (and 0 * inf = NaN in back-propagation), which happens on the
diagonal of every distance matrix and for duplicate images. Distances that are
zero up to rounding are returned as exact zeros with a zero gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "pairwise_distances",
    "triplet_loss",
    "hardest_triplets",
    "batch_triplet_loss",
    "contrastive_loss",
    "VerificationHead",
    "MINING",
]

MINING = ("batch_all", "batch_hard", "semi_hard")
_REDUCTIONS = ("sum", "mean", "none")


# ---------------------------------------------------------------- distances


def _safe_sqrt(squared: Tensor, zero: Tensor) -> Tensor:
    """sqrt(squared), with exact zeros and zero gradient where `zero` is True."""
    ones = torch.ones_like(squared)
    root = torch.sqrt(torch.where(zero, ones, squared))
    return torch.where(zero, torch.zeros_like(squared), root)


def pairwise_distances(embeddings: Tensor, squared: bool = False) -> Tensor:
    """(N, N) Euclidean (or squared Euclidean) distances between the rows of `embeddings` (N, d).

    Computed from one matrix product, |a|^2 + |b|^2 - 2 a.b, clamped at 0; the
    diagonal is exactly 0. Entries that cancel to (nearly) zero are zeros with
    a zero gradient, so the result is safe to back-propagate through.
    """
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be (N, d), got shape {tuple(embeddings.shape)}")
    norms = (embeddings * embeddings).sum(dim=1)
    scale = norms[:, None] + norms[None, :]
    sq = (scale - 2.0 * embeddings @ embeddings.T).clamp_min(0.0)
    eye = torch.eye(len(embeddings), dtype=torch.bool, device=embeddings.device)
    sq = sq.masked_fill(eye, 0.0)
    if squared:
        return sq
    # Rounding in the product leaves about eps * (|a|^2 + |b|^2) of noise on equal rows.
    zero = eye | (sq <= torch.finfo(sq.dtype).eps * scale.detach())
    return _safe_sqrt(sq, zero)


def _row_distances(a: Tensor, b: Tensor, squared: bool) -> Tensor:
    """Distance between matching rows of `a` and `b` (N, d) -> (N,), safe at zero."""
    sq = ((a - b) ** 2).sum(dim=-1)
    return sq if squared else _safe_sqrt(sq, sq == 0)


# ---------------------------------------------------------------- triplet loss


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "sum":
        return values.sum()
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"unknown reduction {reduction!r}; use one of {', '.join(_REDUCTIONS)}")


def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 0.2,
                 reduction: str = "sum") -> Tensor:
    """The FaceNet triplet loss over given triplets (rows of three (N, d) tensors).

    Per triplet max(||a - p||^2 - ||a - n||^2 + margin, 0) with squared
    Euclidean distances; summed (the notes' J), averaged ("mean") or returned
    per triplet ("none").
    """
    if not (anchor.shape == positive.shape == negative.shape):
        raise ValueError(f"anchor {tuple(anchor.shape)}, positive {tuple(positive.shape)} and "
                         f"negative {tuple(negative.shape)} must have the same shape")
    d_ap = _row_distances(anchor, positive, squared=True)
    d_an = _row_distances(anchor, negative, squared=True)
    return _reduce(torch.relu(d_ap - d_an + margin), reduction)


# ---------------------------------------------------------------- mining


def _label_tensor(labels: Tensor | Sequence[int], embeddings: Tensor) -> Tensor:
    """`labels` as a 1-D tensor on the embeddings' device, one per row."""
    labels = torch.as_tensor(labels, device=embeddings.device)
    if labels.ndim != 1 or len(labels) != len(embeddings):
        raise ValueError(f"{tuple(labels.shape)} labels for {len(embeddings)} embeddings; need one label per row")
    return labels


def _masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(positive, negative) boolean (N, N) masks: same label but not itself, other label."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def hardest_triplets(embeddings: Tensor, labels: Tensor | Sequence[int]) -> tuple[Tensor, Tensor]:
    """Per anchor the index of its hardest positive and hardest negative.

    The hardest positive is the farthest sample with the same label (not the
    anchor itself); the hardest negative is the nearest sample with another
    label. Returns two int64 (N,) tensors, -1 where an anchor has none.
    """
    with torch.no_grad():
        labels = _label_tensor(labels, embeddings)
        dist = pairwise_distances(embeddings.detach(), squared=True)
        positive_mask, negative_mask = _masks(labels)
        return _hardest(dist, positive_mask, negative_mask)


def _hardest(dist: Tensor, positive_mask: Tensor, negative_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Indices of the farthest positive and nearest negative per row, -1 where none."""
    inf = torch.tensor(float("inf"), dtype=dist.dtype, device=dist.device)
    positive = torch.where(positive_mask, dist, -inf).argmax(dim=1)
    negative = torch.where(negative_mask, dist, inf).argmin(dim=1)
    positive = torch.where(positive_mask.any(dim=1), positive, -1)
    negative = torch.where(negative_mask.any(dim=1), negative, -1)
    return positive, negative


def _mean_or_zero(values: Tensor, keep: Tensor, anchor: Tensor) -> Tensor:
    """Mean of `values[keep]`; a zero still attached to the graph when nothing is kept."""
    if bool(keep.any()):
        return values[keep].mean()
    return anchor.sum() * 0.0


def _batch_hard(dist: Tensor, positive_mask: Tensor, negative_mask: Tensor, margin: float) -> Tensor:
    """Mean over anchors (with a positive and a negative) of the hardest triplet's loss."""
    positive, negative = _hardest(dist.detach(), positive_mask, negative_mask)
    valid = (positive >= 0) & (negative >= 0)
    rows = torch.arange(len(dist), device=dist.device)
    d_ap = dist[rows, positive.clamp_min(0)]
    d_an = dist[rows, negative.clamp_min(0)]
    return _mean_or_zero(torch.relu(d_ap - d_an + margin), valid, dist)


def _sorted_negatives(dist: Tensor, negative_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Each anchor's negative distances in ascending order, +inf after the last; and how many there are.

    Sorting once per anchor lets both batch-all and semi-hard mining find,
    for every (anchor, positive) pair, the negatives below a bound with a
    binary search: O(N^2 log N) time and O(N^2) memory instead of an
    (N, N, N) tensor of all triplets. The sort is differentiable.
    """
    inf = torch.tensor(float("inf"), dtype=dist.dtype, device=dist.device)
    ordered = torch.where(negative_mask, dist, inf).sort(dim=1).values
    return ordered, negative_mask.sum(dim=1)


def _batch_all(dist: Tensor, positive_mask: Tensor, negative_mask: Tensor, margin: float) -> Tensor:
    """Mean over every valid (anchor, positive, negative) triplet whose loss is above zero.

    Averaging over the active triplets only (Hermans et al. 2017, "batch all
    != 0") keeps the loss from fading as most triplets become easy. For a pair
    (a, p) the active negatives are the c nearest ones with d_an < d_ap +
    margin, and their summed loss is c (d_ap + margin) - (sum of those c
    distances), read from a running sum over the sorted negatives.
    """
    ordered, count = _sorted_negatives(dist, negative_mask)
    columns = torch.arange(dist.shape[1], device=dist.device)
    running = torch.where(columns[None, :] < count[:, None], ordered, torch.zeros_like(ordered)).cumsum(dim=1)
    bound = dist + margin  # [a, p]
    active = torch.searchsorted(ordered.detach().contiguous(), bound.detach().contiguous(), right=False)
    active = torch.where(positive_mask, active, torch.zeros_like(active))
    below = running.gather(1, (active - 1).clamp_min(0))
    totals = active.to(dist.dtype) * bound - torch.where(active > 0, below, torch.zeros_like(below))
    triplets = active.sum()
    if int(triplets) == 0:
        return dist.sum() * 0.0
    return totals[positive_mask].sum() / triplets.to(dist.dtype)


def _semi_hard(dist: Tensor, positive_mask: Tensor, negative_mask: Tensor, margin: float) -> Tensor:
    """Mean over (anchor, positive) pairs of the loss with a semi-hard negative.

    A semi-hard negative is farther from the anchor than the positive
    (d_an > d_ap); of those the nearest is taken, and it adds to the loss only
    while it lies within the margin (d_an < d_ap + margin). When no negative is
    farther than the positive, the farthest negative is used instead, as in
    TensorFlow's triplet_semihard_loss (the usual implementation of FaceNet's
    mining; the paper itself names no fallback): the least hard of the hard
    negatives, not the hardest, which FaceNet found to collapse training
    early on. Pairs whose anchor has no negative at all do not count.
    """
    ordered, count = _sorted_negatives(dist, negative_mask)
    last = dist.shape[1] - 1
    first_farther = torch.searchsorted(ordered.detach().contiguous(), dist.detach().contiguous(), right=True)
    has_farther = first_farther < count[:, None]
    nearest_farther = ordered.gather(1, first_farther.clamp_max(last))  # [a, p]; inf where there is none
    farthest = ordered.gather(1, (count - 1).clamp(0, last)[:, None])  # [a, 1]
    has_negative = count > 0
    farthest = torch.where(has_negative[:, None], farthest, torch.zeros_like(farthest))  # no inf in the graph
    chosen = torch.where(has_farther, nearest_farther, farthest)
    losses = torch.relu(dist - chosen + margin)
    return _mean_or_zero(losses, positive_mask & has_negative[:, None], dist)


_MINERS = {"batch_all": _batch_all, "batch_hard": _batch_hard, "semi_hard": _semi_hard}


def batch_triplet_loss(embeddings: Tensor, labels: Tensor | Sequence[int], margin: float = 0.2,
                       mining: str = "batch_hard", squared: bool = True) -> Tensor:
    """Triplet loss over the triplets mined inside one batch of embeddings (N, d).

    `mining`:
    - "batch_hard": per anchor its farthest positive and nearest negative
      (Hermans et al. 2017); mean over anchors that have both.
    - "batch_all": every valid triplet; mean over those with a loss above zero.
    - "semi_hard": per (anchor, positive) pair the nearest negative farther
      than the positive (FaceNet), which costs something only within the
      margin; where no negative is farther, the farthest negative (as
      TensorFlow's triplet_semihard_loss does; the FaceNet paper names no
      fallback); mean over (anchor, positive) pairs.
    All three run in O(N^2 log N) time and O(N^2) memory.
    Distances are squared Euclidean by default, as in `triplet_loss`, so the
    margin means the same in both; `squared=False` uses plain distances. A
    batch with no valid triplet gives a zero that still back-propagates.
    """
    if mining not in _MINERS:
        raise ValueError(f"unknown mining {mining!r}; use one of {', '.join(MINING)}")
    labels = _label_tensor(labels, embeddings)
    dist = pairwise_distances(embeddings, squared=squared)
    positive_mask, negative_mask = _masks(labels)
    return _MINERS[mining](dist, positive_mask, negative_mask, float(margin))


# ---------------------------------------------------------------- contrastive


def contrastive_loss(e1: Tensor, e2: Tensor, same: Tensor, margin: float = 1.0) -> Tensor:
    """The contrastive loss of Hadsell, Chopra and LeCun (2006) over pairs of rows of e1, e2 (N, d).

    Per pair d^2 when `same` (bool or 0/1, (N,)) and max(margin - d, 0)^2
    otherwise, d the Euclidean distance; the mean over pairs.
    """
    if e1.shape != e2.shape:
        raise ValueError(f"e1 {tuple(e1.shape)} and e2 {tuple(e2.shape)} must have the same shape")
    same = torch.as_tensor(same, device=e1.device).to(e1.dtype).reshape(-1)
    if len(same) != len(e1):
        raise ValueError(f"{len(same)} 'same' flags for {len(e1)} pairs")
    sq = ((e1 - e2) ** 2).sum(dim=-1)
    d = _safe_sqrt(sq, sq == 0)
    losses = same * sq + (1.0 - same) * torch.relu(margin - d) ** 2
    return losses.mean()


# ---------------------------------------------------------------- verification head


class VerificationHead(nn.Module):
    """The notes' binary verification head: y_hat = sigmoid(sum_k w_k |f_i,k - f_j,k| + b).

    `forward` returns the logit sum_k w_k |f_i,k - f_j,k| + b, one per pair
    (N,), so it trains with `torch.nn.BCEWithLogitsLoss` against "same person"
    targets; `probability` applies the sigmoid. The pair order does not matter.
    """

    def __init__(self, dim: int = 128) -> None:
        super().__init__()
        self.dim = int(dim)
        self.linear = nn.Linear(self.dim, 1)

    def forward(self, f_i: Tensor, f_j: Tensor) -> Tensor:
        if f_i.shape != f_j.shape or f_i.shape[-1] != self.dim:
            raise ValueError(f"pairs of (N, {self.dim}) embeddings expected, got {tuple(f_i.shape)} "
                             f"and {tuple(f_j.shape)}")
        return self.linear(torch.abs(f_i - f_j)).squeeze(-1)

    def probability(self, f_i: Tensor, f_j: Tensor) -> Tensor:
        """sigmoid(forward): the probability that each pair shows the same person."""
        return torch.sigmoid(self.forward(f_i, f_j))
