"""Convolution as one matrix product (im2col), forward and backward.

A convolution layer slides each filter over the zero-padded input and takes a
dot product at every position. Gathering every window into one row of a
matrix ("im2col") turns all of those dot products into a single matrix
multiply, which is why it runs at BLAS speed instead of Python speed. The
backward pass is the same trick in reverse: the gradient for the windows is
one matrix product and is then added back onto the input ("col2im") with one
strided add per kernel offset, never a loop over pixels.

Like every deep learning library (and the course), this is cross-correlation:
the filter is not flipped. Layouts follow PyTorch: input (N, C, *spatial),
weight (F, C, *kernel), output (N, F, *out).

`conv2d_naive` is the direct four-loop version, kept as a readable reference
and as the baseline of `benchmarks/scratch_conv.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from heron.scratch.shapes import as_tuple, conv_output_size

__all__ = [
    "ConvCache",
    "windows",
    "im2col",
    "col2im",
    "conv_forward",
    "conv_backward",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv2d_forward",
    "conv2d_backward",
    "conv2d_naive",
]


@dataclass
class ConvCache:
    """What the backward pass needs from the forward pass."""

    x_shape: tuple[int, ...]
    cols: np.ndarray  # (N * prod(out), C * prod(kernel))
    weight: np.ndarray  # (F, C, *kernel)
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    out_shape: tuple[int, ...]  # spatial sizes of the output
    has_bias: bool


def _pad(x: np.ndarray, padding: tuple[int, ...], value: float = 0.0) -> np.ndarray:
    """Pad only the spatial axes of (N, C, *spatial)."""
    if not any(padding):
        return x
    widths = [(0, 0), (0, 0)] + [(p, p) for p in padding]
    return np.pad(x, widths, constant_values=value)


def windows(
    x: np.ndarray,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    pad_value: float = 0.0,
) -> np.ndarray:
    """Every window of `x` (N, C, *spatial) as a view (N, C, *out, *kernel).

    The output sizes are the ones `conv_output_size` gives; shared with pooling.
    """
    d = len(kernel)
    out = tuple(conv_output_size(n, f, p, s) for n, f, p, s in zip(x.shape[2:], kernel, padding, stride))
    xp = _pad(x, padding, pad_value)
    win = sliding_window_view(xp, kernel, axis=tuple(range(2, 2 + d)))  # (N, C, *(n+2p-f+1), *kernel)
    steps = tuple(slice(0, o * s, s) for o, s in zip(out, stride))
    return win[(slice(None), slice(None)) + steps]  # (N, C, *out, *kernel)


def im2col(x, kernel, stride=1, padding=0) -> np.ndarray:
    """Windows of `x` (N, C, *spatial) as rows: (N * prod(out), C * prod(kernel))."""
    d = x.ndim - 2
    kernel = as_tuple(kernel, d, "kernel")
    win = windows(x, kernel, as_tuple(stride, d, "stride"), as_tuple(padding, d, "padding"))
    n, c = x.shape[:2]
    out = win.shape[2 : 2 + d]
    order = (0,) + tuple(range(2, 2 + d)) + (1,) + tuple(range(2 + d, 2 + 2 * d))
    return win.transpose(order).reshape(n * int(np.prod(out)), c * int(np.prod(kernel)))


def col2im(cols, x_shape, kernel, stride=1, padding=0) -> np.ndarray:
    """Adjoint of `im2col`: add each row back onto the window it came from.

    Overlapping windows sum, which is exactly the gradient of `im2col`.
    """
    d = len(x_shape) - 2
    kernel = as_tuple(kernel, d, "kernel")
    stride = as_tuple(stride, d, "stride")
    padding = as_tuple(padding, d, "padding")
    n, c = x_shape[:2]
    out = tuple(conv_output_size(s, f, p, st) for s, f, p, st in zip(x_shape[2:], kernel, padding, stride))
    blocks = cols.reshape((n,) + out + (c,) + kernel)  # (N, *out, C, *kernel)
    blocks = np.moveaxis(blocks, 1 + d, 1)  # (N, C, *out, *kernel)
    padded = np.zeros((n, c) + tuple(s + 2 * p for s, p in zip(x_shape[2:], padding)), dtype=cols.dtype)
    for offset in product(*(range(f) for f in kernel)):  # one strided add per kernel offset
        target = tuple(slice(k, k + o * s, s) for k, o, s in zip(offset, out, stride))
        padded[(slice(None), slice(None)) + target] += blocks[(Ellipsis,) + offset]
    inner = tuple(slice(p, p + s) for p, s in zip(padding, x_shape[2:]))
    return padded[(slice(None), slice(None)) + inner]


def conv_forward(x, weight, bias=None, stride=1, padding=0) -> tuple[np.ndarray, ConvCache]:
    """N-d convolution of x (N, C, *spatial) with weight (F, C, *kernel); returns (out, cache)."""
    d = x.ndim - 2
    if weight.ndim != d + 2 or weight.shape[1] != x.shape[1]:
        raise ValueError(f"weight {weight.shape} does not fit input {x.shape}")
    kernel = weight.shape[2:]
    stride, padding = as_tuple(stride, d, "stride"), as_tuple(padding, d, "padding")
    cols = im2col(x, kernel, stride, padding)  # (N*P, C*K)
    w_mat = weight.reshape(weight.shape[0], -1)  # (F, C*K)
    out = cols @ w_mat.T  # (N*P, F)
    if bias is not None:
        out += bias
    out_sizes = tuple(conv_output_size(s, f, p, st) for s, f, p, st in zip(x.shape[2:], kernel, padding, stride))
    out = np.moveaxis(out.reshape((x.shape[0],) + out_sizes + (weight.shape[0],)), -1, 1)  # (N, F, *out)
    cache = ConvCache(x.shape, cols, weight, stride, padding, out_sizes, bias is not None)
    return np.ascontiguousarray(out), cache


def conv_backward(dout: np.ndarray, cache: ConvCache):
    """Gradients (dx, dweight, dbias) of a convolution from dL/dout (N, F, *out).

    dbias is None when the forward pass had no bias.
    """
    f = cache.weight.shape[0]
    dout_mat = np.moveaxis(dout, 1, -1).reshape(-1, f)  # (N*P, F)
    dw = (dout_mat.T @ cache.cols).reshape(cache.weight.shape)  # (F, C, *kernel)
    db = dout_mat.sum(axis=0) if cache.has_bias else None  # (F,)
    dcols = dout_mat @ cache.weight.reshape(f, -1)  # (N*P, C*K)
    dx = col2im(dcols, cache.x_shape, cache.weight.shape[2:], cache.stride, cache.padding)
    return dx, dw, db


def conv2d_forward(x, weight, bias=None, stride=1, padding=0):
    """2-d convolution of x (N, C, H, W) with weight (F, C, kh, kw); returns (out, cache)."""
    if x.ndim != 4:
        raise ValueError(f"conv2d needs input (N, C, H, W), got shape {x.shape}")
    return conv_forward(x, weight, bias, stride, padding)


def conv2d_backward(dout, cache):
    """Gradients (dx, dweight, dbias) of `conv2d_forward` from dL/dout (N, F, Ho, Wo)."""
    return conv_backward(dout, cache)


def conv1d(x, weight, bias=None, stride=1, padding=0) -> np.ndarray:
    """1-d convolution: x (N, C, L), weight (F, C, k) -> (N, F, Lo). For signals such as an ECG."""
    if x.ndim != 3:
        raise ValueError(f"conv1d needs input (N, C, L), got shape {x.shape}")
    return conv_forward(x, weight, bias, stride, padding)[0]


def conv2d(x, weight, bias=None, stride=1, padding=0) -> np.ndarray:
    """2-d convolution: x (N, C, H, W), weight (F, C, kh, kw) -> (N, F, Ho, Wo)."""
    return conv2d_forward(x, weight, bias, stride, padding)[0]


def conv3d(x, weight, bias=None, stride=1, padding=0) -> np.ndarray:
    """3-d convolution: x (N, C, D, H, W), weight (F, C, kd, kh, kw) -> (N, F, Do, Ho, Wo). For CT scans, video."""
    if x.ndim != 5:
        raise ValueError(f"conv3d needs input (N, C, D, H, W), got shape {x.shape}")
    return conv_forward(x, weight, bias, stride, padding)[0]


def conv2d_naive(x, weight, bias=None, stride=1, padding=0) -> np.ndarray:
    """The same 2-d convolution written as loops over images, filters and output pixels.

    Slow on purpose: the readable definition that `conv2d` must agree with.
    """
    sh, sw = as_tuple(stride, 2, "stride")
    ph, pw = as_tuple(padding, 2, "padding")
    n, _, h, w = x.shape
    f, _, kh, kw = weight.shape
    ho, wo = conv_output_size(h, kh, ph, sh), conv_output_size(w, kw, pw, sw)
    xp = _pad(x, (ph, pw))
    out = np.zeros((n, f, ho, wo), dtype=np.result_type(x, weight))
    for i in range(n):
        for k in range(f):
            for r in range(ho):
                for c in range(wo):
                    patch = xp[i, :, r * sh : r * sh + kh, c * sw : c * sw + kw]  # (C, kh, kw)
                    out[i, k, r, c] = np.sum(patch * weight[k])
            if bias is not None:
                out[i, k] += bias[k]
    return out
