"""Heads trained on top of a frozen, pretrained trunk (the seeds' transfer recipe).

- `gap`: global average pooling, dropout, one linear layer. The seeds' "3-second
  model": a network trained with GAP made its filters to be averaged.
- `linear`: one linear layer on the whole flattened feature map (every position).
- `dense`: BN -> dropout -> dense -> ReLU blocks, then a linear layer: the
  classic fully connected top, on the pooled vector or the flattened map.

Every head accepts either the trunk's map `(N, C, h, w)` or the cached form of
it (`(N, C)` pooled or `(N, C*h*w)` flattened), so weights trained on cached
features carry over unchanged when the whole network is fine-tuned.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["HEADS", "GapHead", "LinearHead", "TransferDenseHead", "make_head", "feature_kind"]

HEADS = ("gap", "linear", "dense")


def feature_kind(head: str, pool: bool = True) -> str:
    """What the feature cache must store for `head`: "pooled" vectors or the whole "map"."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    if head == "gap" or (head == "dense" and pool):
        return "pooled"
    return "map"


class GapHead(nn.Module):
    """Global average pooling -> dropout -> linear."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.mean(dim=(2, 3))  # (N, C)
        return self.fc(self.drop(x))


class LinearHead(nn.Module):
    """One linear layer on the flattened feature map (fixed input size)."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(x.flatten(1)))  # (N, C*h*w) -> (N, classes)


class TransferDenseHead(nn.Module):
    """[pool] -> (BN -> dropout -> linear -> ReLU) x len(hidden) -> BN -> dropout -> linear."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (512,),
        dropout: float = 0.5,
        pool: bool = True,
    ) -> None:
        super().__init__()
        self.pool = pool
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.BatchNorm1d(width), nn.Dropout(dropout / 2), nn.Linear(width, size), nn.ReLU(inplace=True)]
            width = size
        layers += [nn.BatchNorm1d(width), nn.Dropout(dropout)]
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.mean(dim=(2, 3)) if self.pool else x.flatten(1)
        return self.fc(self.body(x))


def make_head(
    kind: str,
    num_features: int,
    num_classes: int,
    map_size: tuple[int, int] = (1, 1),
    dropout: float | None = None,
    hidden: Sequence[int] = (512,),
) -> nn.Module:
    """Build head `kind` for a trunk with `num_features` channels and an `map_size` feature map."""
    flat = num_features * map_size[0] * map_size[1]
    if kind == "gap":
        return GapHead(num_features, num_classes, 0.2 if dropout is None else dropout)
    if kind == "linear":
        return LinearHead(flat, num_classes, 0.0 if dropout is None else dropout)
    if kind == "dense":
        return TransferDenseHead(num_features, num_classes, hidden, 0.5 if dropout is None else dropout, pool=True)
    feature_kind(kind)  # raises with the list of heads
    raise AssertionError
