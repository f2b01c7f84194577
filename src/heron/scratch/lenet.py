"""LeNet-5 in numpy, trained with mini-batch SGD on scikit-learn's digits.

The architecture is the course's conv-pool-conv-pool-fc-fc-softmax:

    32x32x1 -conv5x5,6-> 28x28x6 -pool2-> 14x14x6 -conv5x5,16-> 10x10x16
            -pool2-> 5x5x16 = 400 -fc-> 120 -fc-> 84 -fc-> 10 -softmax

("valid" convolutions, height and width shrinking while channels grow). Every
second-layer filter looks at all six channels, as modern networks do. The
default is ReLU with max pooling; `activation="tanh", pool="avg"` gives the
original's flavour. The 8x8 digits are enlarged 3x (nearest neighbour) to
24x24 and zero-padded to 32x32, the way MNIST's digits sit inside LeNet's input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from heron.scratch.functional import cross_entropy, cross_entropy_grad
from heron.scratch.modules import (
    Activation,
    AvgPool2d,
    Conv2d,
    Dense,
    Flatten,
    MaxPool2d,
    Sequential,
)
from heron.scratch.optim import SGD

__all__ = ["lenet5", "load_digits_32", "evaluate", "train_lenet", "LeNetHistory"]


def lenet5(num_classes: int = 10, activation: str = "relu", pool: str = "max", seed: int = 0) -> Sequential:
    """A numpy LeNet-5 for (N, 1, 32, 32) input (61,706 parameters with 10 classes)."""
    if pool not in ("max", "avg"):
        raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
    rng = np.random.default_rng(seed)
    Pool = MaxPool2d if pool == "max" else AvgPool2d
    return Sequential(
        Conv2d(1, 6, 5, rng=rng),  # (N, 6, 28, 28)
        Activation(activation),
        Pool(2),  # (N, 6, 14, 14)
        Conv2d(6, 16, 5, rng=rng),  # (N, 16, 10, 10)
        Activation(activation),
        Pool(2),  # (N, 16, 5, 5)
        Flatten(),  # (N, 400)
        Dense(400, 120, rng=rng),
        Activation(activation),
        Dense(120, 84, rng=rng),
        Activation(activation),
        Dense(84, num_classes, rng=rng),  # (N, 10) logits; softmax lives in the loss
    )


def load_digits_32(val_fraction: float = 0.2, seed: int = 0):
    """scikit-learn's 8x8 digits as (N, 1, 32, 32) float64, standardised, split stratified.

    Returns (x_train, y_train, x_val, y_val); pixel statistics come from the training part.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.repeat(3, axis=1).repeat(3, axis=2)  # (N, 24, 24)
    images = np.pad(images, ((0, 0), (4, 4), (4, 4)))[:, None] / 16.0  # (N, 1, 32, 32)
    x_tr, x_va, y_tr, y_va = train_test_split(
        images, digits.target, test_size=val_fraction, stratify=digits.target, random_state=seed
    )
    mean, std = x_tr.mean(), x_tr.std()
    return (x_tr - mean) / std, y_tr, (x_va - mean) / std, y_va


def evaluate(model: Sequential, x: np.ndarray, y: np.ndarray, batch: int = 256) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` on x, y without training-mode behaviour."""
    losses, correct = [], 0
    for i in range(0, len(x), batch):
        logits = model.forward(x[i : i + batch], train=False)
        losses.append(cross_entropy(logits, y[i : i + batch]) * len(logits))
        correct += int((logits.argmax(axis=1) == y[i : i + batch]).sum())
    return float(sum(losses) / len(x)), correct / len(x)


@dataclass
class LeNetHistory:
    """Per-epoch training loss, validation loss and accuracy, and the trained model."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    model: Sequential | None = None


def train_lenet(
    epochs: int = 4,
    batch: int = 16,
    lr: float = 0.01,
    momentum: float = 0.9,
    seed: int = 0,
    log: Callable[[int, float, float, float], None] | None = None,
) -> LeNetHistory:
    """Train `lenet5()` on digits with mini-batch SGD; `log(epoch, train_loss, val_loss, val_acc)` per epoch.

    The learning rate follows a cosine from `lr` down to zero over all steps, which
    lets the last epochs settle instead of bouncing around the minimum.
    """
    x_tr, y_tr, x_va, y_va = load_digits_32(seed=seed)
    model = lenet5(seed=seed)
    opt = SGD(lr=lr, momentum=momentum)
    rng = np.random.default_rng(seed)
    history = LeNetHistory(model=model)
    total_steps, step = epochs * -(-len(x_tr) // batch), 0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_tr))
        total = 0.0
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            logits = model.forward(x_tr[idx])  # (B, 10)
            total += cross_entropy(logits, y_tr[idx]) * len(idx)
            model.backward(cross_entropy_grad(logits, y_tr[idx]))
            opt.lr = 0.5 * lr * (1.0 + np.cos(np.pi * step / total_steps))
            step += 1
            opt.step(model.parameters(), model.gradients())
        val_loss, val_acc = evaluate(model, x_va, y_va)
        history.train_loss.append(total / len(x_tr))
        history.val_loss.append(val_loss)
        history.val_acc.append(val_acc)
        if log:
            log(epoch, history.train_loss[-1], val_loss, val_acc)
    return history
