"""Classification metrics on tensors or numpy arrays, defined as scikit-learn defines them.

Single-label functions take `probs` as `(N, C)` scores (probabilities or
logits: only the arg-max matters, except for `log_loss`) or as `(N,)` class
indices, and `targets` as `(N,)` class indices. Multi-label functions take
`(N, C)` probabilities and `(N, C)` 0/1 targets. Scalars come back as Python
floats, tables as numpy arrays.

`log_loss` has the course's Kaggle trick: `clip=(0.05, 0.95)` bounds every
probability before scoring, so one confident mistake cannot cost more than
-log(0.05) ~ 3.0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = [
    "METRICS",
    "MULTILABEL_METRICS",
    "accuracy",
    "confusion_matrix",
    "error_rate",
    "log_loss",
    "multilabel_accuracy",
    "multilabel_fbeta",
    "precision_recall_per_class",
    "resolve_metric",
]

ArrayLike = torch.Tensor | np.ndarray


def _numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def _labels(preds: ArrayLike) -> np.ndarray:
    """Class indices from `(N, C)` scores or `(N,)` indices."""
    arr = _numpy(preds)
    return arr.argmax(axis=1) if arr.ndim == 2 else arr.astype(np.int64)


def accuracy(probs: ArrayLike, targets: ArrayLike) -> float:
    """Fraction of samples whose arg-max class equals the target (sklearn `accuracy_score`)."""
    preds, y = _labels(probs), _numpy(targets).astype(np.int64)
    return float((preds == y).mean()) if len(y) else float("nan")


def error_rate(probs: ArrayLike, targets: ArrayLike) -> float:
    """1 - accuracy."""
    return 1.0 - accuracy(probs, targets)


def log_loss(probs: ArrayLike, targets: ArrayLike, eps: float = 1e-15,
             clip: tuple[float, float] | None = None) -> float:
    """Mean negative log-probability of the true class (sklearn `log_loss`).

    `probs` is `(N, C)` probabilities, or `(N,)` probabilities of class 1 for a
    binary problem. Probabilities are clipped to `clip` (if given), then to
    `[eps, 1 - eps]`, and each row renormalised to sum to one, as Kaggle's
    scorer does.
    """
    p = _numpy(probs).astype(np.float64)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)  # (N, 2)
    if clip is not None:
        p = np.clip(p, clip[0], clip[1])
    p = np.clip(p, eps, 1.0 - eps)
    p = p / p.sum(axis=1, keepdims=True)
    y = _numpy(targets).astype(np.int64)
    return float(-np.log(p[np.arange(len(y)), y]).mean())


def confusion_matrix(probs: ArrayLike, targets: ArrayLike, num_classes: int | None = None) -> np.ndarray:
    """`(C, C)` counts: row = true class, column = predicted class (sklearn's layout)."""
    preds, y = _labels(probs), _numpy(targets).astype(np.int64)
    if num_classes is None:
        scores = _numpy(probs)
        num_classes = scores.shape[1] if scores.ndim == 2 else int(max(preds.max(initial=-1), y.max(initial=-1)) + 1)
    flat = np.bincount(y * num_classes + preds, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def precision_recall_per_class(probs: ArrayLike, targets: ArrayLike,
                               num_classes: int | None = None) -> dict[str, np.ndarray]:
    """Per-class precision, recall, f1 and support (sklearn `precision_recall_fscore_support`,
    `average=None, zero_division=0`): a class never predicted has precision 0."""
    cm = confusion_matrix(probs, targets, num_classes).astype(np.float64)
    tp = np.diag(cm)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": actual.astype(np.int64)}


def _binarize(probs: ArrayLike, threshold: float) -> np.ndarray:
    return (_numpy(probs) > threshold).astype(np.int64)


def multilabel_accuracy(probs: ArrayLike, targets: ArrayLike, threshold: float = 0.5,
                        exact: bool = False) -> float:
    """Fraction of (sample, label) decisions that are right at `threshold`.

    `exact=True` counts a sample right only when all its labels are
    (sklearn's subset accuracy, `accuracy_score` on label matrices).
    """
    preds, y = _binarize(probs, threshold), _numpy(targets).astype(np.int64)
    hits = preds == y  # (N, C)
    return float(hits.all(axis=1).mean() if exact else hits.mean())


def multilabel_fbeta(probs: ArrayLike, targets: ArrayLike, threshold: float = 0.5, beta: float = 1.0,
                     average: str = "samples") -> float:
    """F-beta over label matrices (sklearn `fbeta_score`, `zero_division=0`).

    `average="samples"` (the Planet competition's F2) scores each sample and
    averages; `"micro"` pools every decision; `"macro"` averages per label.
    """
    preds, y = _binarize(probs, threshold), _numpy(targets).astype(np.int64)
    axis = {"samples": 1, "macro": 0, "micro": None}[average]
    tp = (preds * y).sum(axis=axis).astype(np.float64)
    fp = (preds * (1 - y)).sum(axis=axis).astype(np.float64)
    fn = ((1 - preds) * y).sum(axis=axis).astype(np.float64)
    b2 = beta * beta
    denom = (1 + b2) * tp + b2 * fn + fp
    score = np.divide((1 + b2) * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(np.mean(score))


METRICS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "accuracy": accuracy,
    "error_rate": error_rate,
    "log_loss": log_loss,
}

MULTILABEL_METRICS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "accuracy": multilabel_accuracy,
    "exact_match": lambda p, t: multilabel_accuracy(p, t, exact=True),
    "f1": multilabel_fbeta,
    "f2": lambda p, t: multilabel_fbeta(p, t, beta=2.0),
}


def resolve_metric(metric: str | Callable, multilabel: bool = False) -> tuple[str, Callable]:
    """(name, fn(probs, targets) -> float) for a metric name or a callable."""
    if callable(metric):
        return getattr(metric, "__name__", type(metric).__name__), metric
    table = MULTILABEL_METRICS if multilabel else METRICS
    if metric not in table:
        kind = "multi-label" if multilabel else "single-label"
        raise ValueError(f"unknown {kind} metric {metric!r}; choose from {', '.join(table)} or pass a function")
    return metric, table[metric]
