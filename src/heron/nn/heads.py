"""Classifier heads: what sits on top of a convolutional trunk.

Each head takes the trunk's feature map `(N, C, H, W)` and returns logits;
`forward(x, pre_logits=True)` stops before the last linear layer (the
embedding generic code uses for features and transfer learning), and
`reset(num_classes)` replaces that layer for a new task.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ClassifierHead", "DenseHead"]


class ClassifierHead(nn.Module):
    """Global average pooling, dropout, one linear layer (ResNet, EfficientNet).

    The seeds' "GAP head": few parameters, and the filters of a network trained
    with it were made to be averaged.
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_features = in_features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.flatten(self.pool(x))  # (N, C)
        if pre_logits:
            return x
        return self.fc(self.drop(x))

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.in_features, num_classes) if num_classes > 0 else nn.Identity()


class DenseHead(nn.Module):
    """Flatten (optionally after pooling to a fixed grid), then dense layers.

    The classic AlexNet/VGG/LeNet top and the seeds' "dense head" for transfer
    learning: each hidden layer is Linear -> [BatchNorm] -> activation ->
    Dropout. `pool_size=None` flattens the feature map as it is.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (4096, 4096),
        dropout: float = 0.5,
        pool_size: int | tuple[int, int] | None = None,
        batch_norm: bool = False,
        act: type[nn.Module] = nn.ReLU,
        dropout_first: bool = False,
    ) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(pool_size) if pool_size else nn.Identity()
        self.flatten = nn.Flatten(1)
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            if dropout_first and dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers.append(nn.Linear(width, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(act(inplace=True) if act is nn.ReLU else act())
            if not dropout_first and dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        self.hidden = nn.Sequential(*layers)
        self.pre_logits_features = width
        self.fc = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.hidden(self.flatten(self.pool(x)))  # (N, width)
        return x if pre_logits else self.fc(x)

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.pre_logits_features, num_classes) if num_classes > 0 else nn.Identity()
