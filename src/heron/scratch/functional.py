"""Activations and losses with their derivatives, written out by hand.

Each activation comes with the derivative of its output with respect to its
input (`*_deriv(x)`), so a backward pass is `dout * act_deriv(x)`. Losses
return a scalar and have a matching `*_grad` returning d(loss)/d(input).
Softmax and cross-entropy subtract the row maximum first so large logits do
not overflow.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "sigmoid",
    "sigmoid_deriv",
    "tanh",
    "tanh_deriv",
    "relu",
    "relu_deriv",
    "softmax",
    "log_softmax",
    "softmax_backward",
    "cross_entropy",
    "cross_entropy_grad",
    "euclidean",
    "euclidean_grad",
    "mse",
    "mse_grad",
    "one_hot",
]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), computed without overflow for large |x|."""
    out = np.empty_like(x, dtype=np.result_type(x, np.float32))
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def sigmoid_deriv(x: np.ndarray) -> np.ndarray:
    """d sigmoid(x) / dx = sigmoid(x) * (1 - sigmoid(x))."""
    s = sigmoid(x)
    return s * (1.0 - s)


def tanh(x: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent."""
    return np.tanh(x)


def tanh_deriv(x: np.ndarray) -> np.ndarray:
    """d tanh(x) / dx = 1 - tanh(x)^2."""
    return 1.0 - np.tanh(x) ** 2


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0)."""
    return np.maximum(x, 0)


def relu_deriv(x: np.ndarray) -> np.ndarray:
    """1 where x > 0, else 0 (the subgradient PyTorch uses at 0)."""
    return (x > 0).astype(np.result_type(x, np.float32))


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(z) / sum(exp(z)) along `axis`, shifted by the maximum for stability."""
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """log(softmax(z)) without forming tiny probabilities first."""
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax_backward(dout: np.ndarray, s: np.ndarray, axis: int = -1) -> np.ndarray:
    """Vector-Jacobian product of softmax: given s = softmax(z) and dL/ds, return dL/dz."""
    return s * (dout - (dout * s).sum(axis=axis, keepdims=True))


def one_hot(labels: np.ndarray, num_classes: int, dtype=np.float64) -> np.ndarray:
    """Integer labels of any shape -> one-hot array with a trailing class axis."""
    labels = np.asarray(labels)
    out = np.zeros(labels.shape + (num_classes,), dtype=dtype)
    np.put_along_axis(out, labels[..., None], 1.0, axis=-1)
    return out


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of integer `labels` (N,) under softmax(logits) (N, K)."""
    logp = log_softmax(logits, axis=1)  # (N, K)
    return float(-np.take_along_axis(logp, labels[:, None], axis=1).mean())


def cross_entropy_grad(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """d cross_entropy / d logits = (softmax(logits) - one_hot(labels)) / N."""
    grad = softmax(logits, axis=1)  # (N, K)
    grad[np.arange(len(labels)), labels] -= 1.0
    return grad / len(labels)


def euclidean(pred: np.ndarray, target: np.ndarray) -> float:
    """Half the summed squared distance, 0.5 * sum((pred - target)^2)."""
    return float(0.5 * np.sum((pred - target) ** 2))


def euclidean_grad(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """d euclidean / d pred = pred - target."""
    return pred - target


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error over every entry."""
    return float(np.mean((pred - target) ** 2))


def mse_grad(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """d mse / d pred = 2 (pred - target) / size."""
    return 2.0 * (pred - target) / pred.size
