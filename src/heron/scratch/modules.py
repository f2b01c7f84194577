"""Layers as small objects with `forward` and `backward`, for building networks.

Each layer keeps what its backward pass needs from the last forward pass and
stores parameter gradients in `grads` under the same names as `params`.
`Sequential` chains layers and exposes every parameter under a dotted name
("0.weight"), so an optimiser from `heron.scratch.optim` can update them.
Weights start from He initialisation (std = sqrt(2 / fan_in)), biases at zero.
"""

from __future__ import annotations

import numpy as np

from heron.scratch import functional as F
from heron.scratch.conv import conv2d_backward, conv2d_forward
from heron.scratch.layers import (
    batchnorm_backward,
    batchnorm_eval,
    batchnorm_forward,
    dense_backward,
    dense_forward,
    dropout_backward,
    dropout_forward,
    update_running_stats,
)
from heron.scratch.pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)

__all__ = [
    "Layer",
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "Dense",
    "Activation",
    "Flatten",
    "BatchNorm",
    "Dropout",
    "Sequential",
]

_ACTIVATIONS = {
    "relu": (F.relu, F.relu_deriv),
    "tanh": (F.tanh, F.tanh_deriv),
    "sigmoid": (F.sigmoid, F.sigmoid_deriv),
}


class Layer:
    """Base class: no parameters, identity forward and backward."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout


def _he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)


class Conv2d(Layer):
    """2-d convolution with `out_channels` filters of size kernel x kernel over every input channel."""

    def __init__(self, in_channels, out_channels, kernel, stride=1, padding=0, rng=None):
        super().__init__()
        rng = rng or np.random.default_rng(0)
        fan_in = in_channels * kernel * kernel
        self.params = {
            "weight": _he(rng, (out_channels, in_channels, kernel, kernel), fan_in),
            "bias": np.zeros(out_channels),
        }
        self.stride, self.padding = stride, padding

    def forward(self, x, train=True):
        out, self._cache = conv2d_forward(x, self.params["weight"], self.params["bias"], self.stride, self.padding)
        return out

    def backward(self, dout):
        dx, self.grads["weight"], self.grads["bias"] = conv2d_backward(dout, self._cache)
        return dx


class MaxPool2d(Layer):
    """Max pooling; stride defaults to the kernel size."""

    def __init__(self, kernel=2, stride=None, padding=0):
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, x, train=True):
        out, self._cache = max_pool2d_forward(x, self.kernel, self.stride, self.padding)
        return out

    def backward(self, dout):
        return max_pool2d_backward(dout, self._cache)


class AvgPool2d(MaxPool2d):
    """Average pooling (LeNet-5's original subsampling); stride defaults to the kernel size."""

    def forward(self, x, train=True):
        out, self._cache = avg_pool2d_forward(x, self.kernel, self.stride, self.padding)
        return out

    def backward(self, dout):
        return avg_pool2d_backward(dout, self._cache)


class Dense(Layer):
    """Fully connected layer, weight (out_features, in_features)."""

    def __init__(self, in_features, out_features, rng=None):
        super().__init__()
        rng = rng or np.random.default_rng(0)
        self.params = {"weight": _he(rng, (out_features, in_features), in_features), "bias": np.zeros(out_features)}

    def forward(self, x, train=True):
        self._x = x
        return dense_forward(x, self.params["weight"], self.params["bias"])

    def backward(self, dout):
        dx, self.grads["weight"], self.grads["bias"] = dense_backward(dout, self._x, self.params["weight"])
        return dx


class Activation(Layer):
    """Elementwise nonlinearity by name: relu, tanh or sigmoid."""

    def __init__(self, name="relu"):
        super().__init__()
        if name not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}")
        self.name = name
        self._fn, self._deriv = _ACTIVATIONS[name]

    def forward(self, x, train=True):
        self._x = x
        return self._fn(x)

    def backward(self, dout):
        return dout * self._deriv(self._x)


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), the bridge from convolutions to dense layers."""

    def forward(self, x, train=True):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return dout.reshape(self._shape)


class BatchNorm(Layer):
    """Batch normalisation over channels (axis 1) with running statistics for evaluation."""

    def __init__(self, channels, momentum=0.1, eps=1e-5):
        super().__init__()
        self.params = {"gamma": np.ones(channels), "beta": np.zeros(channels)}
        self.running_mean, self.running_var = np.zeros(channels), np.ones(channels)
        self.momentum, self.eps = momentum, eps

    def forward(self, x, train=True):
        gamma, beta = self.params["gamma"], self.params["beta"]
        if not train:
            return batchnorm_eval(x, gamma, beta, self.running_mean, self.running_var, self.eps)
        out, self._cache = batchnorm_forward(x, gamma, beta, self.eps)
        self.running_mean, self.running_var = update_running_stats(
            self.running_mean, self.running_var, self._cache, self.momentum
        )
        return out

    def backward(self, dout):
        dx, self.grads["gamma"], self.grads["beta"] = batchnorm_backward(dout, self._cache)
        return dx


class Dropout(Layer):
    """Inverted dropout: active only when `train=True`."""

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.p, self.rng = p, rng or np.random.default_rng(0)

    def forward(self, x, train=True):
        out, self._mult = dropout_forward(x, self.p, self.rng, train=train)
        return out

    def backward(self, dout):
        return dropout_backward(dout, self._mult)


class Sequential(Layer):
    """Layers applied in order; parameters named "<index>.<name>"."""

    def __init__(self, *layers: Layer):
        super().__init__()
        self.layers = list(layers)

    def forward(self, x, train=True):
        for layer in self.layers:
            x = layer.forward(x, train)
        return x

    def backward(self, dout):
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def parameters(self) -> dict[str, np.ndarray]:
        """Every parameter array (live references, updated in place by optimisers)."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()}

    def gradients(self) -> dict[str, np.ndarray]:
        """Gradients from the last backward pass, under the names `parameters` uses."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.grads.items()}
