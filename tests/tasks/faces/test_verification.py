"""Verification metrics against sklearn.metrics and brute-force counting loops."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from heron.errors import DataError
from heron.tasks.faces import verification as v

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def _scores(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distances in [0, 2] with ties (2 decimals); same-person pairs are nearer on average."""
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.3
    d = np.where(same, rng.normal(0.7, 0.25, n), rng.normal(1.2, 0.25, n))
    return np.round(np.clip(d, 0, 2), 2), same


def _rates(d, same, tau) -> tuple[float, float]:
    """(far, tar) at tau by counting."""
    accepted_different = sum(1 for x, s in zip(d, same) if not s and x <= tau)
    accepted_same = sum(1 for x, s in zip(d, same) if s and x <= tau)
    return accepted_different / sum(1 for s in same if not s), accepted_same / sum(1 for s in same if s)


def _candidates(d) -> list[float]:
    return [float(np.nextafter(min(d), -np.inf))] + sorted(set(float(x) for x in d))


def test_roc_matches_sklearn_and_counting():
    d, same = _scores()
    curve = v.roc(d, same)
    fpr, tpr, thr = sklearn_metrics.roc_curve(same, -d, drop_intermediate=False)
    np.testing.assert_allclose(curve["far"], fpr, atol=1e-12)
    np.testing.assert_allclose(curve["tar"], tpr, atol=1e-12)
    np.testing.assert_allclose(curve["thresholds"][1:], -thr[1:], atol=1e-12)
    assert curve["auc"] == pytest.approx(sklearn_metrics.roc_auc_score(same, -d), abs=1e-12)
    assert len(curve["thresholds"]) == len(set(d.tolist())) + 1  # ties collapse into one point
    for k in (0, 5, 50, len(curve["thresholds"]) - 1):
        far, tar = _rates(d, same, curve["thresholds"][k])
        assert (curve["far"][k], curve["tar"][k]) == pytest.approx((far, tar), abs=1e-12)


@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.3, 1.0])
def test_threshold_and_tar_for_a_target_far_match_brute_force(target):
    d, same = _scores()
    best = max(t for t in _candidates(d) if _rates(d, same, t)[0] <= target)
    assert v.threshold_for_far(d, same, target) == best
    assert v.tar_at_far(d, same, target) == pytest.approx(_rates(d, same, best)[1], abs=1e-12)


def test_best_accuracy_threshold_matches_brute_force():
    d, same = _scores(seed=1)
    accuracy = {t: sum((x <= t) == s for x, s in zip(d, same)) / len(d) for t in _candidates(d)}
    top = max(accuracy.values())
    tau = v.best_accuracy_threshold(d, same)
    assert tau == min(t for t, a in accuracy.items() if a == top)
    assert v.verification_accuracy(d, same, tau) == pytest.approx(top, abs=1e-12)
    assert v.verification_accuracy([0.1, 0.5, 0.9], [True, False, False], 0.5) == pytest.approx(2 / 3)


def test_a_roc_needs_both_kinds_of_pair():
    with pytest.raises(DataError, match="at least two people"):
        v.roc([0.1, 0.2], [True, True])


def test_pair_indices_all_pairs():
    labels = [3, 1, 3, 2, 1, 3]
    i, j, same = v.pair_indices(labels)
    want = list(itertools.combinations(range(len(labels)), 2))
    assert list(zip(i.tolist(), j.tolist())) == want
    assert same.tolist() == [labels[a] == labels[b] for a, b in want]


@pytest.mark.parametrize("enumerate_limit", [10**9, 0])  # list the different pairs, or sample them
def test_pair_indices_balanced_sample(monkeypatch, enumerate_limit):
    monkeypatch.setattr(v, "_ENUMERATE_LIMIT", enumerate_limit)
    labels = np.repeat(np.arange(12), 4)  # 72 same-person pairs, 1056 different
    i, j, same = v.pair_indices(labels, max_pairs=100, seed=3)
    assert len(i) == 100 and same.sum() == 50
    assert np.all(i < j) and len(set(zip(i.tolist(), j.tolist()))) == 100
    assert np.array_equal(same, labels[i] == labels[j])
    again = v.pair_indices(labels, max_pairs=100, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip((i, j, same), again))
    i, j, same = v.pair_indices(labels, max_pairs=200, seed=0)
    assert same.sum() == 72 and len(i) == 200  # all same pairs when there are fewer than half


def test_pair_distances_match_loops():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(7, 5)).astype(np.float32)
    i, j, _ = v.pair_indices(np.arange(7) % 3)
    got = v.pair_distances(e, i, j)
    want = [math.dist(e[a].tolist(), e[b].tolist()) for a, b in zip(i, j)]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_nearest_rank1_and_stranger_rejection_match_loops():
    gallery, probes, strangers = _unit(40, 16, 0), _unit(25, 16, 1), _unit(30, 16, 2)
    gallery_labels = np.arange(40) // 4
    index, distance = v.nearest(gallery, probes)
    brute = []
    for p in probes.tolist():
        row = [math.dist(p, g) for g in gallery.tolist()]
        brute.append((row.index(min(row)), min(row)))
    assert index.tolist() == [b[0] for b in brute]
    np.testing.assert_allclose(distance, [b[1] for b in brute], rtol=1e-6)

    probe_labels = (np.arange(25) * 7) % 10
    want = sum(gallery_labels[k] == y for (k, _), y in zip(brute, probe_labels)) / 25
    assert v.rank1_accuracy(gallery, gallery_labels, probes, probe_labels) == pytest.approx(want)
    near_copies = gallery[::3] + 0.01  # probes that really are enrolled people
    assert v.rank1_accuracy(gallery, gallery_labels, near_copies, gallery_labels[::3]) == 1.0

    _, stranger_distance = v.nearest(gallery, strangers)
    tau = float(np.median(stranger_distance))
    nearest_loop = [min(math.dist(s, g) for g in gallery.tolist()) for s in strangers.tolist()]
    want = sum(x > tau for x in nearest_loop) / len(nearest_loop)
    assert v.stranger_rejection(gallery, strangers, tau) == pytest.approx(want)
    assert 0 < want < 1


def test_nearest_searches_in_blocks(monkeypatch):
    monkeypatch.setattr(v, "_CHUNK", 50)  # two probes per block against a gallery of 25
    gallery, probes = _unit(25, 8, 4), _unit(9, 8, 5)
    index, _ = v.nearest(gallery, probes)
    brute = [int(np.argmin(np.linalg.norm(gallery - p, axis=1))) for p in probes]
    assert index.tolist() == brute


def test_normal_tail_threshold_matches_the_empirical_one_where_the_far_is_measurable():
    rng = np.random.default_rng(3)
    different = rng.normal(1.2, 0.1, 200_000)
    same_d = rng.normal(0.5, 0.1, 1000)
    distances = np.r_[same_d, different]
    same = np.r_[np.ones(1000, bool), np.zeros(200_000, bool)]
    fitted = v.normal_tail_threshold(distances, same, 1e-3)
    assert abs(fitted - (1.2 + 0.1 * -3.090232)) < 2e-3  # the normal quantile Phi^-1(1e-3)
    assert abs(fitted - v.threshold_for_far(distances, same, 1e-3)) < 5e-3


def test_too_few_pairs_take_the_cautious_fitted_threshold():
    from heron.tasks.faces.train import choose_threshold

    rng = np.random.default_rng(4)
    distances = np.r_[rng.normal(0.5, 0.1, 50), rng.normal(1.2, 0.15, 100)]
    same = np.r_[np.ones(50, bool), np.zeros(100, bool)]
    tau, rule = choose_threshold(distances, same, "far", 1e-3)  # 100 pairs cannot show a FAR of 1e-3
    assert tau == pytest.approx(min(v.normal_tail_threshold(distances, same, 1e-3),
                                    v.threshold_for_far(distances, same, 1e-3)))
    assert "too few" in rule or "nearest" in rule
    tau_measured, rule_measured = choose_threshold(distances, same, "far", 2e-2)
    assert tau_measured == v.threshold_for_far(distances, same, 2e-2) and "measured" in rule_measured


def test_a_curve_computed_once_gives_the_same_thresholds_and_rates():
    rng = np.random.default_rng(5)
    distances = np.r_[rng.normal(0.6, 0.2, 300), rng.normal(1.1, 0.2, 3000)]
    same = np.r_[np.ones(300, bool), np.zeros(3000, bool)]
    curve = v.roc(distances, same)
    for far in (1e-3, 1e-2, 0.1):
        assert v.tar_at_far(distances, same, far, curve=curve) == v.tar_at_far(distances, same, far)
        assert v.threshold_for_far(distances, same, far, curve=curve) == v.threshold_for_far(distances, same, far)
    assert v.best_accuracy_threshold(distances, same, curve=curve) == v.best_accuracy_threshold(distances, same)
