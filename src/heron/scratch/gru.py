"""A GRU cell and layer with hand-written backward passes.

The gated recurrent unit decides at every step how much of its state to keep.
With the gate order and equations of `torch.nn.GRUCell`:

    r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)        reset gate
    z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)        update gate
    n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))     candidate state (h-tilde)
    h' = (1 - z) * n + z * h

A reset gate near 0 lets the cell forget its past when forming the candidate;
an update gate near 1 copies the old state through unchanged, which is how
gradients survive long sequences.

Weights are stacked as PyTorch stacks them: W_ih (3H, D), W_hh (3H, H),
b_ih (3H,), b_hh (3H,), rows in the order r, z, n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heron.scratch.functional import sigmoid
from heron.scratch.rnn import scan

__all__ = ["GRUCellCache", "gru_cell_forward", "gru_cell_backward", "gru_forward", "gru_backward"]


@dataclass
class GRUCellCache:
    """Everything one step's backward pass needs."""

    x: np.ndarray  # (N, D)
    h: np.ndarray  # (N, H) previous state
    r: np.ndarray
    z: np.ndarray
    n: np.ndarray
    hn: np.ndarray  # W_hn h + b_hn, before the reset gate multiplies it
    W_ih: np.ndarray
    W_hh: np.ndarray


def gru_cell_forward(x, h, W_ih, W_hh, b_ih, b_hh) -> tuple[np.ndarray, GRUCellCache]:
    """One GRU step: x (N, D), h (N, H) -> (h' (N, H), cache)."""
    gi = x @ W_ih.T + b_ih  # (N, 3H)
    gh = h @ W_hh.T + b_hh  # (N, 3H)
    i_r, i_z, i_n = np.split(gi, 3, axis=1)
    h_r, h_z, h_n = np.split(gh, 3, axis=1)
    r = sigmoid(i_r + h_r)
    z = sigmoid(i_z + h_z)
    n = np.tanh(i_n + r * h_n)
    h_new = (1.0 - z) * n + z * h
    return h_new, GRUCellCache(x, h, r, z, n, h_n, W_ih, W_hh)


def gru_cell_backward(dh_new: np.ndarray, c: GRUCellCache):
    """Gradients of one GRU step from dL/dh' (N, H).

    Returns (dx (N, D), dh (N, H), dW_ih, dW_hh, db_ih, db_hh).
    """
    dn = dh_new * (1.0 - c.z)
    dz = dh_new * (c.h - c.n)
    dh = dh_new * c.z  # the direct path through the update gate
    dn_pre = dn * (1.0 - c.n**2)  # through tanh
    dr = dn_pre * c.hn
    dr_pre = dr * c.r * (1.0 - c.r)  # through sigmoid
    dz_pre = dz * c.z * (1.0 - c.z)
    dgi = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)  # (N, 3H) w.r.t. x @ W_ih.T + b_ih
    dgh = np.concatenate([dr_pre, dz_pre, dn_pre * c.r], axis=1)  # (N, 3H) w.r.t. h @ W_hh.T + b_hh
    dx = dgi @ c.W_ih
    dh = dh + dgh @ c.W_hh
    return dx, dh, dgi.T @ c.x, dgh.T @ c.h, dgi.sum(axis=0), dgh.sum(axis=0)


def gru_forward(x, h0, W_ih, W_hh, b_ih, b_hh) -> tuple[np.ndarray, list[GRUCellCache]]:
    """Run the GRU over x (T, N, D) from h0 (N, H); returns (hidden states (T, N, H), caches)."""
    steps = scan(lambda x_t, carry: gru_cell_forward(x_t, carry[0], W_ih, W_hh, b_ih, b_hh), x, (h0, None))
    return np.stack([h for h, _ in steps]), [c for _, c in steps]


def gru_backward(dhs: np.ndarray, caches: list[GRUCellCache]):
    """BPTT through a GRU layer from dL/dh_t for every step (T, N, H).

    Returns (dx (T, N, D), dh0 (N, H), dW_ih, dW_hh, db_ih, db_hh).
    """
    first = caches[0]
    grads = [np.zeros_like(first.W_ih), np.zeros_like(first.W_hh)]
    grads += [np.zeros(first.W_ih.shape[0]), np.zeros(first.W_hh.shape[0])]
    dx = np.empty((len(caches),) + first.x.shape)
    dh_next = np.zeros_like(first.h)
    for t in reversed(range(len(caches))):
        dx[t], dh_next, *step = gru_cell_backward(dhs[t] + dh_next, caches[t])
        for total, g in zip(grads, step):
            total += g
    return (dx, dh_next, *grads)
