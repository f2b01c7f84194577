"""Parameter updates and gradient clipping for the numpy models.

Optimisers take two dicts with the same keys, parameters and gradients, and
update the parameter arrays in place. Clipping guards recurrent networks
against exploding gradients: by value caps every entry, by norm rescales all
gradients together when their global L2 norm is too large (the direction is
kept), matching `torch.nn.utils.clip_grad_value_` and `clip_grad_norm_`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SGD", "Adam", "clip_by_value", "clip_by_norm", "global_norm"]

Arrays = dict[str, np.ndarray]


class SGD:
    """Stochastic gradient descent with optional momentum and L2 weight decay.

    v = momentum * v + g (+ weight_decay * p);  p -= lr * v   (PyTorch's convention).
    """

    def __init__(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self._velocity: Arrays = {}

    def step(self, params: Arrays, grads: Arrays) -> None:
        for name, p in params.items():
            g = grads[name] + self.weight_decay * p if self.weight_decay else grads[name]
            if self.momentum:
                v = self._velocity.get(name)
                g = g.copy() if v is None else self.momentum * v + g
                self._velocity[name] = g
            p -= self.lr * g


class Adam:
    """Adam: per-parameter step sizes from running averages of the gradient and its square."""

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.lr, self.betas, self.eps = lr, betas, eps
        self._m: Arrays = {}
        self._v: Arrays = {}
        self._t = 0

    def step(self, params: Arrays, grads: Arrays) -> None:
        self._t += 1
        b1, b2 = self.betas
        for name, p in params.items():
            g = grads[name]
            m = self._m[name] = b1 * self._m.get(name, 0.0) + (1 - b1) * g
            v = self._v[name] = b2 * self._v.get(name, 0.0) + (1 - b2) * g * g
            m_hat = m / (1 - b1**self._t)
            v_hat = v / (1 - b2**self._t)
            p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def clip_by_value(grads: Arrays, limit: float) -> Arrays:
    """Every gradient entry clamped into [-limit, limit]."""
    return {k: np.clip(g, -limit, limit) for k, g in grads.items()}


def global_norm(grads: Arrays) -> float:
    """L2 norm of all gradients taken together as one vector."""
    return float(np.sqrt(sum(np.sum(g * g) for g in grads.values())))


def clip_by_norm(grads: Arrays, max_norm: float) -> tuple[Arrays, float]:
    """Gradients rescaled so their global norm is at most `max_norm`; returns (grads, norm before).

    Scale factor max_norm / (norm + 1e-6), never above 1, as in `torch.nn.utils.clip_grad_norm_`.
    """
    norm = global_norm(grads)
    scale = min(1.0, max_norm / (norm + 1e-6))
    return {k: g * scale for k, g in grads.items()}, norm
