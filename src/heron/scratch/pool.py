"""Max, average and global average pooling, forward and backward.

Pooling shrinks a feature map by summarising each window with one number.
Windows come from the same strided view the convolution uses
(`heron.scratch.conv.windows`), so the output size is the same formula. The
backward passes route the gradient to the arg-max of each window (max) or
spread it evenly over the window (average), with one strided add per kernel
offset. Average pooling counts the zero padding in the denominator, as
PyTorch's default `count_include_pad=True` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from heron.scratch.conv import windows
from heron.scratch.shapes import as_tuple

__all__ = [
    "PoolCache",
    "max_pool2d",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "global_avg_pool",
    "global_avg_pool_backward",
]


@dataclass
class PoolCache:
    """What a pooling backward pass needs from its forward pass."""

    x_shape: tuple[int, ...]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    argmax: np.ndarray | None  # (N, C, Ho, Wo) flat index inside each window, max pooling only


def _params(kernel, stride, padding):
    kernel = as_tuple(kernel, 2, "kernel")
    stride = kernel if stride is None else as_tuple(stride, 2, "stride")
    padding = as_tuple(padding, 2, "padding")
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ValueError(f"padding {padding} must be at most half the kernel {kernel}")
    return kernel, stride, padding


def _scatter(per_offset, x_shape, kernel, stride, padding, dtype) -> np.ndarray:
    """Add per-offset gradients (N, C, Ho, Wo) back onto the padded input and crop."""
    n, c, h, w = x_shape
    ho, wo = next(iter(per_offset.values())).shape[2:]
    padded = np.zeros((n, c, h + 2 * padding[0], w + 2 * padding[1]), dtype=dtype)
    for (i, j), grad in per_offset.items():
        padded[:, :, i : i + ho * stride[0] : stride[0], j : j + wo * stride[1] : stride[1]] += grad
    return padded[:, :, padding[0] : padding[0] + h, padding[1] : padding[1] + w]


def max_pool2d_forward(x, kernel=2, stride=None, padding=0):
    """Max over each window of x (N, C, H, W); stride defaults to the kernel. Returns (out, cache)."""
    kernel, stride, padding = _params(kernel, stride, padding)
    win = windows(x, kernel, stride, padding, pad_value=-np.inf)  # (N, C, Ho, Wo, kh, kw)
    flat = win.reshape(win.shape[:4] + (-1,))  # (N, C, Ho, Wo, kh*kw)
    argmax = flat.argmax(axis=-1)  # (N, C, Ho, Wo)
    out = np.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0]
    return out, PoolCache(x.shape, kernel, stride, padding, argmax)


def max_pool2d_backward(dout, cache: PoolCache) -> np.ndarray:
    """dL/dx of max pooling: each window's gradient goes to its maximum."""
    kh, kw = cache.kernel
    per_offset = {(i, j): dout * (cache.argmax == i * kw + j) for i, j in product(range(kh), range(kw))}
    return _scatter(per_offset, cache.x_shape, cache.kernel, cache.stride, cache.padding, dout.dtype)


def max_pool2d(x, kernel=2, stride=None, padding=0) -> np.ndarray:
    """Max pooling of x (N, C, H, W) -> (N, C, Ho, Wo)."""
    return max_pool2d_forward(x, kernel, stride, padding)[0]


def avg_pool2d_forward(x, kernel=2, stride=None, padding=0):
    """Mean over each window of x (N, C, H, W), zero padding included. Returns (out, cache)."""
    kernel, stride, padding = _params(kernel, stride, padding)
    win = windows(x, kernel, stride, padding)  # (N, C, Ho, Wo, kh, kw)
    out = win.mean(axis=(-2, -1))
    return out, PoolCache(x.shape, kernel, stride, padding, None)


def avg_pool2d_backward(dout, cache: PoolCache) -> np.ndarray:
    """dL/dx of average pooling: each window's gradient is shared equally by its cells."""
    kh, kw = cache.kernel
    share = dout / (kh * kw)
    per_offset = {(i, j): share for i, j in product(range(kh), range(kw))}
    return _scatter(per_offset, cache.x_shape, cache.kernel, cache.stride, cache.padding, dout.dtype)


def avg_pool2d(x, kernel=2, stride=None, padding=0) -> np.ndarray:
    """Average pooling of x (N, C, H, W) -> (N, C, Ho, Wo)."""
    return avg_pool2d_forward(x, kernel, stride, padding)[0]


def global_avg_pool(x: np.ndarray) -> np.ndarray:
    """Mean over every spatial position: (N, C, *spatial) -> (N, C)."""
    return x.mean(axis=tuple(range(2, x.ndim)))


def global_avg_pool_backward(dout: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray:
    """dL/dx of global average pooling: dout (N, C) spread evenly over every position."""
    spatial = int(np.prod(x_shape[2:]))
    return np.broadcast_to((dout / spatial).reshape(dout.shape + (1,) * (len(x_shape) - 2)), x_shape).copy()
