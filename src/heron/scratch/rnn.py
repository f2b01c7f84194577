"""`scan` and a vanilla recurrent layer with hand-written backpropagation through time.

`scan(fn, sequence, init)` walks a sequence one step at a time, handing `fn`
the next element and the result of the previous call, starting from `init`;
it is the loop every recurrent network is made of.

The vanilla RNN step is h_t = tanh(W_xh x_t + b_h + W_hh h_{t-1}), the same
equation as `torch.nn.RNN` (whose second bias we leave at zero). Because the
same weights are used at every step, their gradients are sums over time, and
the gradient of h_{t-1} collects what flows back from step t: that message
passed from the end of the sequence to the start is backpropagation through
time (BPTT).

Shapes: x (T, N, D) time-major, hidden (N, H), W_xh (H, D), W_hh (H, H), b_h (H,).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["scan", "RNNCache", "rnn_step", "rnn_forward", "rnn_backward"]


def scan(fn: Callable[[Any, Any], Any], sequence: Iterable[Any], init: Any) -> list[Any]:
    """[fn(x_1, init), fn(x_2, previous), ...]: every result, each fed into the next call."""
    results, prev = [], init
    for item in sequence:
        prev = fn(item, prev)
        results.append(prev)
    return results


def rnn_step(x_t, h_prev, W_xh, W_hh, b_h) -> np.ndarray:
    """One step: tanh(x_t W_xh^T + h_prev W_hh^T + b_h) -> (N, H)."""
    return np.tanh(x_t @ W_xh.T + h_prev @ W_hh.T + b_h)


@dataclass
class RNNCache:
    """Inputs, initial state and every hidden state, kept for BPTT."""

    x: np.ndarray  # (T, N, D)
    h0: np.ndarray  # (N, H)
    hs: np.ndarray  # (T, N, H)
    W_xh: np.ndarray
    W_hh: np.ndarray


def rnn_forward(x, h0, W_xh, W_hh, b_h) -> tuple[np.ndarray, RNNCache]:
    """Run the RNN over x (T, N, D) from h0 (N, H); returns (all hidden states (T, N, H), cache)."""
    hs = np.stack(scan(lambda x_t, h: rnn_step(x_t, h, W_xh, W_hh, b_h), x, h0))  # (T, N, H)
    return hs, RNNCache(x, h0, hs, W_xh, W_hh)


def rnn_backward(dhs: np.ndarray, cache: RNNCache):
    """BPTT from dL/dh_t for every step (T, N, H).

    Returns (dx (T, N, D), dh0 (N, H), dW_xh, dW_hh, db_h).
    """
    x, hs, W_xh, W_hh = cache.x, cache.hs, cache.W_xh, cache.W_hh
    h_prev = np.concatenate([cache.h0[None], hs[:-1]])  # (T, N, H)
    dx = np.empty_like(x, dtype=dhs.dtype)
    dW_xh, dW_hh = np.zeros_like(W_xh), np.zeros_like(W_hh)
    db_h = np.zeros(W_hh.shape[0], dtype=dhs.dtype)
    dh_next = np.zeros_like(cache.h0, dtype=dhs.dtype)  # gradient arriving from step t + 1
    for t in reversed(range(len(x))):
        da = (dhs[t] + dh_next) * (1.0 - hs[t] ** 2)  # (N, H) through tanh
        dW_xh += da.T @ x[t]
        dW_hh += da.T @ h_prev[t]
        db_h += da.sum(axis=0)
        dx[t] = da @ W_xh
        dh_next = da @ W_hh
    return dx, dh_next, dW_xh, dW_hh, db_h
