"""Every metric equals scikit-learn's on the same inputs, for tensors and numpy arrays alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from heron.train import metrics as hm


def _probs(n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)  # (N, C)
    targets = rng.integers(0, c, size=n)
    return probs, targets


@pytest.mark.parametrize("as_tensor", [False, True])
def test_accuracy_and_error_rate(as_tensor):
    probs, y = _probs(200, 5, 0)
    p, t = (torch.from_numpy(probs), torch.from_numpy(y)) if as_tensor else (probs, y)
    expected = skm.accuracy_score(y, probs.argmax(1))
    assert hm.accuracy(p, t) == pytest.approx(expected)
    assert hm.error_rate(p, t) == pytest.approx(1 - expected)
    assert hm.accuracy(probs.argmax(1), y) == pytest.approx(expected)  # class indices work too


def test_log_loss_matches_sklearn():
    probs, y = _probs(300, 4, 1)
    assert hm.log_loss(torch.from_numpy(probs).float(), torch.from_numpy(y)) == pytest.approx(
        skm.log_loss(y, probs, labels=range(4)), rel=1e-6)


def test_log_loss_with_the_kaggle_clip():
    probs, y = _probs(300, 2, 2)
    probs[:10] = np.eye(2)[1 - y[:10]]  # ten confident mistakes
    clipped = np.clip(probs, 0.05, 0.95)
    clipped /= clipped.sum(1, keepdims=True)
    ours = hm.log_loss(probs, y, clip=(0.05, 0.95))
    assert ours == pytest.approx(skm.log_loss(y, clipped), rel=1e-9)
    assert ours < hm.log_loss(probs, y)
    # a 1-D column of P(class 1) is a binary problem
    assert hm.log_loss(probs[:, 1], y, clip=(0.05, 0.95)) == pytest.approx(ours, rel=1e-9)


def test_log_loss_eps_bounds_a_certain_mistake():
    assert hm.log_loss(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-np.log(1e-15), rel=1e-6)


def test_confusion_matrix_and_per_class_scores():
    probs, y = _probs(150, 4, 3)
    probs[:, 3] = 0.0  # class 3 is never predicted: precision must be 0, not NaN
    preds = probs.argmax(1)
    cm = hm.confusion_matrix(torch.from_numpy(probs), torch.from_numpy(y))
    assert np.array_equal(cm, skm.confusion_matrix(y, preds, labels=range(4)))
    ours = hm.precision_recall_per_class(probs, y)
    p, r, f, s = skm.precision_recall_fscore_support(y, preds, labels=range(4), average=None, zero_division=0)
    np.testing.assert_allclose(ours["precision"], p)
    np.testing.assert_allclose(ours["recall"], r)
    np.testing.assert_allclose(ours["f1"], f)
    np.testing.assert_array_equal(ours["support"], s)
    assert ours["precision"][3] == 0.0


def _multilabel(n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < 0.3).astype(np.int64)
    probs = np.clip(targets * 0.6 + rng.random((n, c)) * 0.5, 0, 1)  # mostly right, sometimes not
    targets[0] = 0  # a sample with no labels at all
    probs[0] = 0.1
    return probs, targets


def test_multilabel_accuracy():
    probs, y = _multilabel(120, 6, 4)
    preds = (probs > 0.5).astype(np.int64)
    assert hm.multilabel_accuracy(torch.from_numpy(probs), torch.from_numpy(y)) == pytest.approx(
        skm.accuracy_score(y.ravel(), preds.ravel()))
    assert hm.multilabel_accuracy(probs, y, exact=True) == pytest.approx(skm.accuracy_score(y, preds))
    preds_07 = (probs > 0.7).astype(np.int64)
    assert hm.multilabel_accuracy(probs, y, threshold=0.7) == pytest.approx(
        skm.accuracy_score(y.ravel(), preds_07.ravel()))


@pytest.mark.parametrize("average", ["samples", "micro", "macro"])
@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_multilabel_fbeta(average, beta):
    probs, y = _multilabel(120, 6, 5)
    preds = (probs > 0.4).astype(np.int64)
    expected = skm.fbeta_score(y, preds, beta=beta, average=average, zero_division=0)
    assert hm.multilabel_fbeta(probs, y, threshold=0.4, beta=beta, average=average) == pytest.approx(expected)


def test_resolve_metric():
    assert hm.resolve_metric("accuracy") == ("accuracy", hm.accuracy)
    assert hm.resolve_metric("accuracy", multilabel=True) == ("accuracy", hm.multilabel_accuracy)
    assert hm.resolve_metric(hm.log_loss)[0] == "log_loss"
    with pytest.raises(ValueError, match="unknown single-label metric 'f2'"):
        hm.resolve_metric("f2")
