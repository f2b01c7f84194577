"""Dense, batch normalisation and dropout as plain forward/backward functions.

Weights use PyTorch's layouts (a dense weight is (out_features, in_features)),
so the same numbers can be loaded into `torch.nn` to check every gradient.

Batch normalisation normalises over the batch (and spatial axes for images),
then rescales with learnable gamma and beta. In training it uses the batch's
own mean and variance; at test time it uses running averages gathered during
training (updated with the unbiased variance, as PyTorch does).

Dropout comes in two flavours that agree in expectation. Classical dropout
zeroes units while training and multiplies by the keep probability (1 - p) at
test time. Inverted dropout divides the kept units by (1 - p) while training,
so the test-time network is the plain network and weights keep one scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "dense_forward",
    "dense_backward",
    "BatchNormCache",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_eval",
    "update_running_stats",
    "dropout_forward",
    "dropout_backward",
]


def dense_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Fully connected layer: x (N, in) @ weight.T (in, out) + bias -> (N, out)."""
    out = x @ weight.T  # (N, out)
    return out if bias is None else out + bias


def dense_backward(dout: np.ndarray, x: np.ndarray, weight: np.ndarray):
    """Gradients (dx (N, in), dweight (out, in), dbias (out,)) of `dense_forward`."""
    return dout @ weight, dout.T @ x, dout.sum(axis=0)


def _stat_axes(x: np.ndarray) -> tuple[int, ...]:
    """Axes averaged over: the batch and any spatial axes, never the feature/channel axis 1."""
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """Reshape a (C,) vector to broadcast against (N, C, *spatial)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


@dataclass
class BatchNormCache:
    """Saved by the training-mode forward pass; mean and var are the batch's biased statistics."""

    x_hat: np.ndarray
    inv_std: np.ndarray  # (C,)
    gamma: np.ndarray  # (C,)
    mean: np.ndarray  # (C,)
    var: np.ndarray  # (C,)
    count: int  # values averaged per channel


def batchnorm_forward(x, gamma, beta, eps: float = 1e-5):
    """Training-mode batch norm of x (N, C) or (N, C, *spatial) with batch statistics.

    Returns (out, cache); `cache.mean` and `cache.var` feed `update_running_stats`.
    """
    axes = _stat_axes(x)
    mean = x.mean(axis=axes)  # (C,)
    var = x.var(axis=axes)  # (C,) biased, as used for normalising
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - _per_channel(mean, x.ndim)) * _per_channel(inv_std, x.ndim)
    out = _per_channel(gamma, x.ndim) * x_hat + _per_channel(beta, x.ndim)
    count = x.size // x.shape[1]
    return out, BatchNormCache(x_hat, inv_std, gamma, mean, var, count)


def batchnorm_backward(dout: np.ndarray, cache: BatchNormCache):
    """Gradients (dx, dgamma, dbeta) of training-mode batch norm.

    Uses the compact form dx = inv_std / m * (m * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat)),
    which accounts for the mean and variance depending on every input.
    """
    axes = _stat_axes(dout)
    x_hat, m = cache.x_hat, cache.count
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * x_hat).sum(axis=axes)
    dx_hat = dout * _per_channel(cache.gamma, dout.ndim)
    sum_dx_hat = _per_channel(dx_hat.sum(axis=axes), dout.ndim)
    sum_dx_hat_x_hat = _per_channel((dx_hat * x_hat).sum(axis=axes), dout.ndim)
    dx = _per_channel(cache.inv_std, dout.ndim) / m * (m * dx_hat - sum_dx_hat - x_hat * sum_dx_hat_x_hat)
    return dx, dgamma, dbeta


def batchnorm_eval(x, gamma, beta, running_mean, running_var, eps: float = 1e-5) -> np.ndarray:
    """Test-mode batch norm: normalise with the running statistics, no batch dependence."""
    scale = gamma / np.sqrt(running_var + eps)  # (C,)
    shift = beta - running_mean * scale  # (C,)
    return x * _per_channel(scale, x.ndim) + _per_channel(shift, x.ndim)


def update_running_stats(running_mean, running_var, cache: BatchNormCache, momentum: float = 0.1):
    """New (running_mean, running_var) after one training batch (exponential average).

    The variance is made unbiased with m / (m - 1), matching `torch.nn.BatchNorm`.
    """
    unbiased = cache.var * cache.count / max(cache.count - 1, 1)
    new_mean = (1.0 - momentum) * running_mean + momentum * cache.mean
    new_var = (1.0 - momentum) * running_var + momentum * unbiased
    return new_mean, new_var


def dropout_forward(x, p: float, rng: np.random.Generator, train: bool = True, inverted: bool = True):
    """Dropout with drop probability `p`; returns (out, multiplier) where out = x * multiplier.

    inverted=True (the modern default): training keeps each unit with probability
    1 - p and divides it by 1 - p; test time is the identity.
    inverted=False (classical): training only zeroes units; test time multiplies by 1 - p.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not train:
        multiplier = 1.0 if inverted else 1.0 - p
        return x * multiplier, multiplier
    keep = (rng.random(x.shape) >= p).astype(x.dtype)
    multiplier = keep / (1.0 - p) if inverted else keep
    return x * multiplier, multiplier


def dropout_backward(dout: np.ndarray, multiplier) -> np.ndarray:
    """dL/dx of dropout: the same multiplier the forward pass applied."""
    return dout * multiplier
