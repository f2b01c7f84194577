"""A tiny Backbone and a separable synthetic problem shared by the training tests (imported, not collected)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from heron.models._base import Backbone
from heron.nn.heads import ClassifierHead
from heron.nn.layers import ConvBnAct


class TinyNet(Backbone):
    """stem -> two stages -> GAP head; 3x8x8 inputs, a few hundred parameters."""

    def __init__(self, num_classes: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = ConvBnAct(3, 4, 3)
        self.body = nn.Sequential(ConvBnAct(4, 8, 3, stride=2), ConvBnAct(8, 8, 3))
        self.neck = nn.Identity()
        self.num_features = 8
        self.head = ClassifierHead(8, num_classes, dropout=dropout)


class NoisyDataset(Dataset):
    """Wraps tensors and adds numpy and Python random noise, so every RNG matters for resume."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        import random

        noise = float(np.random.randn()) * 0.01 + random.random() * 0.01
        return self.x[i] + noise, self.y[i]


def make_data(n: int, num_classes: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class k shifts channel 0 by a class-specific offset: linearly separable by its mean."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, (n,), generator=g)
    x = torch.randn(n, 3, 8, 8, generator=g) * 0.5  # (N, 3, 8, 8)
    x[:, 0] += (y.float() * 2.0 - (num_classes - 1)).view(-1, 1, 1)
    return x, y


def make_loaders(n_train: int = 128, n_valid: int = 64, batch_size: int = 16, noisy: bool = False,
                 num_classes: int = 2):
    xt, yt = make_data(n_train, num_classes, seed=1)
    xv, yv = make_data(n_valid, num_classes, seed=2)
    train_ds = NoisyDataset(xt, yt) if noisy else TensorDataset(xt, yt)
    train = DataLoader(train_ds, batch_size=batch_size, shuffle=True)
    valid = DataLoader(TensorDataset(xv, yv), batch_size=batch_size)
    return train, valid


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter and buffer."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
