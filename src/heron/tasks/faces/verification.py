"""Verification and identification metrics on embeddings, in numpy (no torch).

Distances are Euclidean between L2-normalised embeddings (0 to 2); a pair is
accepted as "same person" when its distance is <= tau. For a threshold tau:

- TAR (true accept rate): the fraction of same-person pairs accepted;
- FAR (false accept rate): the fraction of different-person pairs accepted.

`roc` sweeps tau over every distinct distance; the threshold functions pick a
tau from that sweep (for a target FAR, or for the best accuracy), and the
identification functions search a gallery with one matrix product.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from heron.errors import DataError

__all__ = [
    "pair_indices",
    "pair_distances",
    "roc",
    "threshold_for_far",
    "normal_tail_threshold",
    "best_accuracy_threshold",
    "tar_at_far",
    "verification_accuracy",
    "nearest",
    "rank1_accuracy",
    "stranger_rejection",
]

_ENUMERATE_LIMIT = 2_000_000  # pairs listed outright; above this, different-person pairs are sampled
_CHUNK = 1 << 22  # elements of a distance block held at once


# ---------------------------------------------------------------- pairs


def _same_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every unordered same-label pair (i < j)."""
    firsts, seconds = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        a, b = np.triu_indices(len(members), k=1)
        firsts.append(members[a])
        seconds.append(members[b])
    if not firsts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(firsts).astype(np.int64), np.concatenate(seconds).astype(np.int64)


def _sample_different_pairs(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct unordered different-label pairs as codes i * n + j (i < j), drawn uniformly."""
    n = len(labels)
    codes = np.zeros(0, np.int64)
    while len(codes) < count:
        i, j = rng.integers(0, n, size=(2, 2 * (count - len(codes)) + 16))
        keep = labels[i] != labels[j]
        low, high = np.minimum(i, j)[keep], np.maximum(i, j)[keep]
        fresh = np.unique(low.astype(np.int64) * n + high)
        fresh = fresh[~np.isin(fresh, codes)]
        codes = np.concatenate([codes, rng.permutation(fresh)[: count - len(codes)]])
    return codes


def pair_indices(labels: Sequence, max_pairs: int | None = None,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unordered pairs (i < j) of items and whether they share a label.

    With `max_pairs` None: every pair. Otherwise at most `max_pairs` pairs,
    balanced: up to half same-label pairs (all of them when there are fewer),
    the rest different-label pairs, each drawn without repeats by `seed`.
    Returns (i, j, same) sorted by (i, j): int64, int64, bool arrays.
    """
    labels = np.asarray(labels).reshape(-1)
    n = len(labels)
    if max_pairs is None or max_pairs >= n * (n - 1) // 2:
        i, j = np.triu_indices(n, k=1)
    else:
        rng = np.random.default_rng(seed)
        si, sj = _same_pairs(labels)
        keep = rng.choice(len(si), size=min(len(si), max_pairs // 2), replace=False)
        total_different = n * (n - 1) // 2 - len(si)
        wanted = min(total_different, max_pairs - len(keep))
        if total_different <= _ENUMERATE_LIMIT:
            ai, aj = np.triu_indices(n, k=1)
            codes = (ai * n + aj)[labels[ai] != labels[aj]]
            codes = rng.choice(codes, size=wanted, replace=False)
        else:
            codes = _sample_different_pairs(labels, wanted, rng)
        i = np.concatenate([si[keep], codes // n])
        j = np.concatenate([sj[keep], codes % n])
    order = np.lexsort((j, i))
    i, j = i[order].astype(np.int64), j[order].astype(np.int64)
    return i, j, labels[i] == labels[j]


def pair_distances(embeddings: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Euclidean distance of each pair (embeddings[i[m]], embeddings[j[m]]), as float64 (n,)."""
    e = np.asarray(embeddings)
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    out = np.empty(len(i), dtype=np.float64)
    step = max(1, _CHUNK // max(1, e.shape[1]))
    for start in range(0, len(i), step):
        a = e[i[start:start + step]].astype(np.float64)
        b = e[j[start:start + step]].astype(np.float64)
        out[start:start + step] = np.sqrt(((a - b) ** 2).sum(axis=1))
    return out


# ---------------------------------------------------------------- ROC and thresholds


def _checked(distances, same) -> tuple[np.ndarray, np.ndarray]:
    """Distances (float64) and same flags (bool) of equal length, both kinds of pair present."""
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    s = np.asarray(same).reshape(-1).astype(bool)
    if d.shape != s.shape:
        raise ValueError(f"{d.size} distances for {s.size} 'same' flags")
    if not np.isfinite(d).all():
        raise ValueError("distances must be finite (an embedding holds NaN or inf)")
    n_same = int(s.sum())
    if n_same == 0 or n_same == s.size:
        raise DataError(f"choosing a threshold needs same-person and different-person pairs, got {n_same} same "
                        f"and {s.size - n_same} different; use validation data with at least two people and "
                        f"two images of some person")
    return d, s


def roc(distances, same) -> dict:
    """The ROC of "same person when distance <= tau" over every distinct distance tau.

    Returns far, tar (float64, non-decreasing) and thresholds (ascending;
    the first lies just below every distance, where nothing is accepted:
    far = tar = 0), and auc, the area under tar(far), which equals
    sklearn.metrics.roc_auc_score(same, -distances) (ties count half).
    """
    d, s = _checked(distances, same)
    order = np.argsort(d, kind="stable")
    d, s = d[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(d) > 0), d.size - 1]  # last index of each distinct distance
    accepted_same = np.cumsum(s)[last]
    accepted_different = np.cumsum(~s)[last]
    tar = np.r_[0.0, accepted_same / s.sum()]
    far = np.r_[0.0, accepted_different / (~s).sum()]
    thresholds = np.r_[np.nextafter(d[0], -np.inf), d[last]]
    auc = float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2.0))
    return {"far": far, "tar": tar, "thresholds": thresholds, "auc": auc}


def _operating_index(curve: dict, target_far: float) -> int:
    """Index of the largest threshold whose FAR is at most `target_far` (FAR rises with tau)."""
    return int(np.searchsorted(curve["far"], target_far, side="right")) - 1


def threshold_for_far(distances, same, target_far: float = 1e-3, curve: dict | None = None) -> float:
    """The largest tau (an observed distance) whose false accept rate is <= `target_far`.

    When even the nearest different-person pair breaks the target (too few
    pairs to resolve it), tau lies just below every distance: nobody is
    accepted and FAR is 0. `curve`: `roc(distances, same)` when the caller has it.
    """
    curve = roc(distances, same) if curve is None else curve
    return float(curve["thresholds"][_operating_index(curve, target_far)])


def normal_tail_threshold(distances, same, target_far: float = 1e-3) -> float:
    """tau where a normal fitted to the different-person distances puts `target_far` of them below it.

    For a false accept rate smaller than one pair in the data can show (fewer
    than 1 / target_far different-person pairs), the empirical threshold only
    says "just below the nearest stranger pair seen"; the fitted tail
    extrapolates, mean + sigma * Phi^-1(target_far), and is the cautious choice.
    """
    from statistics import NormalDist

    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    s = np.asarray(same).reshape(-1).astype(bool)
    different = d[~s]
    if different.size < 2:
        raise DataError("a fitted threshold needs at least 2 different-person pairs; add people")
    return float(different.mean() + different.std(ddof=1) * NormalDist().inv_cdf(target_far))


def tar_at_far(distances, same, far: float, curve: dict | None = None) -> float:
    """The true accept rate at `threshold_for_far(distances, same, far)`; `curve` as there."""
    curve = roc(distances, same) if curve is None else curve
    return float(curve["tar"][_operating_index(curve, far)])


def best_accuracy_threshold(distances, same, curve: dict | None = None) -> float:
    """The tau (an observed distance) with the highest verification accuracy; the smallest on ties.
    `curve`: `roc(distances, same)` when the caller has it."""
    curve = roc(distances, same) if curve is None else curve
    s = np.asarray(same).reshape(-1).astype(bool)
    n_same, n_different = int(s.sum()), int((~s).sum())
    correct = curve["tar"] * n_same + (1.0 - curve["far"]) * n_different
    return float(curve["thresholds"][int(np.argmax(correct))])


def verification_accuracy(distances, same, tau: float) -> float:
    """The fraction of pairs decided right by "same person when distance <= tau"."""
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    s = np.asarray(same).reshape(-1).astype(bool)
    if d.shape != s.shape or d.size == 0:
        raise ValueError(f"{d.size} distances for {s.size} 'same' flags; need one per pair and at least one")
    return float(np.mean((d <= tau) == s))


# ---------------------------------------------------------------- identification


def _matrix(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be (n, d) embeddings, got shape {a.shape}")
    return a.astype(np.result_type(a.dtype, np.float32), copy=False)


def nearest(gallery, probes) -> tuple[np.ndarray, np.ndarray]:
    """For each probe (P, d) the index of its nearest gallery row (G, d) and the distance to it.

    The search is one matrix product per block of probes (|p|^2 + |g|^2 -
    2 p.g^T); the returned distance is then recomputed exactly from the two
    rows, so it does not carry the product's rounding. Ties go to the lower
    gallery index.
    """
    g, p = _matrix(gallery, "gallery"), _matrix(probes, "probes")
    if len(g) == 0:
        raise ValueError("the gallery is empty")
    if g.shape[1] != p.shape[1]:
        raise ValueError(f"gallery has {g.shape[1]}-d embeddings but probes have {p.shape[1]}-d")
    g_norms = (g * g).sum(axis=1)
    index = np.empty(len(p), dtype=np.int64)
    step = max(1, _CHUNK // len(g))
    for start in range(0, len(p), step):
        block = p[start:start + step]
        scores = g_norms[None, :] - 2.0 * (block @ g.T)  # |p|^2 is the same along a row
        index[start:start + step] = np.argmin(scores, axis=1)
    distance = np.sqrt(((p.astype(np.float64) - g[index].astype(np.float64)) ** 2).sum(axis=1))
    return index, distance


def rank1_accuracy(gallery, gallery_labels: Sequence, probes, probe_labels: Sequence) -> float:
    """The fraction of probes whose nearest gallery embedding has the probe's label."""
    gallery_labels, probe_labels = np.asarray(gallery_labels), np.asarray(probe_labels)
    if len(probe_labels) == 0:
        raise ValueError("no probes to identify")
    index, _ = nearest(gallery, probes)
    return float(np.mean(gallery_labels[index] == probe_labels))


def stranger_rejection(gallery, strangers, tau: float) -> float:
    """The fraction of strangers (people not in the gallery) whose nearest distance is > tau."""
    if len(strangers) == 0:
        raise ValueError("no strangers to reject")
    _, distance = nearest(gallery, strangers)
    return float(np.mean(distance > tau))
