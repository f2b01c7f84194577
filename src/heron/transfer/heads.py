"""Heads trained on top of a frozen, pretrained trunk (the seeds' transfer recipe).

- `gap`: global average pooling, [batch norm,] dropout, one linear layer. The
  seeds' "3-second model": a network trained with GAP made its filters to be averaged.
- `linear`: one linear layer on the whole flattened feature map (every position).
- `dense`: BN -> dropout -> dense -> ReLU blocks, then a linear layer: the
  classic fully connected top, on the pooled vector or the flattened map.
- `fcn`: fully convolutional: 3x3 conv -> BN -> ReLU blocks (optionally
  max-pooled), a 1x1 conv with one channel per class, global average pooling.
  The seeds' fisheries head: no dense layer, so it runs at any input size
  (`--size 360 640`), and its last conv is a map of each class over the image
  (`FCNHead.class_map`, what `heron heatmap` draws).

Regularisation is per layer: `dropout` is one probability for the head (the
dense head then uses half of it before its hidden layers) or one per dropout
layer, inverted dropout as `nn.Dropout` does it (kept units scaled by 1/(1-p)
in training, nothing at evaluation); `bn` puts batch norm in front of each
linear layer (on by default in the dense head only).

Every head accepts either the trunk's map `(N, C, h, w)` or the cached form of
it (`(N, C)` pooled or `(N, C*h*w)` flattened), so weights trained on cached
features carry over unchanged when the whole network is fine-tuned.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["HEADS", "GapHead", "LinearHead", "TransferDenseHead", "FCNHead", "MetadataHead", "make_head", "feature_kind", "head_dropouts", "reset_head"]

Dropout = float | Sequence[float] | None

HEADS = ("gap", "linear", "dense", "fcn")


def feature_kind(head: str, pool: bool = True) -> str:
    """What the feature cache must store for `head`: "pooled" vectors or the whole "map"."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    if head == "gap" or (head == "dense" and pool):
        return "pooled"
    return "map"


def head_dropouts(dropout: Dropout, layers: int, default: float) -> list[float]:
    """One dropout probability per dropout layer of a head with `layers` of them.

    None: `default` for the last layer (half of it before the others); one
    number p: the same rule with p; a list: one value per layer, as given.
    """
    if dropout is None or isinstance(dropout, (int, float)):
        p = default if dropout is None else float(dropout)
        values = [p / 2] * (layers - 1) + [p]
    else:
        values = [float(v) for v in dropout]
        if len(values) == 1:
            return head_dropouts(values[0], layers, default)
        if len(values) != layers:
            raise ValueError(f"--dropout takes 1 or {layers} values for this head (one per dropout layer), "
                             f"got {len(values)}")
    bad = [v for v in values if not 0.0 <= v < 1.0]
    if bad:
        raise ValueError(f"dropout must be in [0, 1), got {bad[0]}")
    return values


class GapHead(nn.Module):
    """Global average pooling -> [batch norm] -> dropout -> linear."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.2, bn: bool = False) -> None:
        super().__init__()
        if bn:
            self.bn = nn.BatchNorm1d(in_features)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.mean(dim=(2, 3))  # (N, C)
        if hasattr(self, "bn"):
            x = self.bn(x)
        return self.fc(self.drop(x))


class LinearHead(nn.Module):
    """One linear layer on the flattened feature map (fixed input size), [batch norm and] dropout first."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0, bn: bool = False) -> None:
        super().__init__()
        if bn:
            self.bn = nn.BatchNorm1d(in_features)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (N, C*h*w)
        if hasattr(self, "bn"):
            x = self.bn(x)
        return self.fc(self.drop(x))


class FCNHead(nn.Module):
    """([conv3x3 -> BN -> ReLU] [-> 2x2 max pool]) x len(hidden) -> dropout -> conv1x1 to classes -> GAP.

    The seeds' fully convolutional head. `pools`: how many hidden blocks,
    from the first, end in a 2x2 max pool (ceil mode, so odd and 1-pixel
    sides work at rectangular sizes); the default 0 keeps the trunk's
    resolution, the seeds' high-resolution heatmap variant. `map_size`
    (h, w) is the trunk's map at the training size: it unflattens cached
    features `(N, C*h*w)`; at other sizes pass the map `(N, C, h, w)` itself.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        map_size: tuple[int, int] = (1, 1),
        hidden: Sequence[int] = (128,),
        dropout: float = 0.2,
        pools: int = 0,
        bn: bool = True,
    ) -> None:
        super().__init__()
        if not 0 <= pools <= len(hidden):
            raise ValueError(f"an FCN head with {len(hidden)} hidden conv layers takes 0 to {len(hidden)} pools, "
                             f"got {pools}")
        self.in_channels, self.map_size = in_channels, tuple(map_size)
        layers: list[nn.Module] = []
        width = in_channels
        for i, size in enumerate(hidden):
            layers += [nn.Conv2d(width, size, 3, padding=1, bias=not bn)]
            layers += ([nn.BatchNorm2d(size)] if bn else []) + [nn.ReLU(inplace=True)]
            layers += [nn.MaxPool2d(2, ceil_mode=True)] if i < pools else []
            width = size
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.classify = nn.Conv2d(width, num_classes, 1)

    def as_map(self, x: torch.Tensor) -> torch.Tensor:
        """`(N, C, h, w)` as it is, or the cached `(N, C*h*w)` unflattened to the training map size."""
        if x.ndim == 4:
            return x
        h, w = self.map_size
        if x.ndim != 2 or x.shape[1] != self.in_channels * h * w:
            raise ValueError(f"FCN head: features {tuple(x.shape)} are not a flattened {self.in_channels}x{h}x{w} "
                             "map; pass the trunk's map (N, C, h, w) at other input sizes")
        return x.view(x.shape[0], self.in_channels, h, w)

    def class_map(self, x: torch.Tensor, pool: bool = True) -> torch.Tensor:
        """`(N, classes, h', w')`: each class's score at each position; its spatial mean is the logit.

        `pool=False` skips the max pools (same weights, a map at the trunk's
        resolution; the seeds' trick for a sharper heatmap, less accurate).
        """
        x = self.as_map(x)  # (N, C, h, w)
        for layer in self.body:
            if pool or not isinstance(layer, nn.MaxPool2d):
                x = layer(x)
        return self.classify(self.drop(x))  # (N, classes, h', w')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.class_map(x).mean(dim=(2, 3))  # (N, classes)


class TransferDenseHead(nn.Module):
    """[pool] -> ([BN] -> dropout -> linear -> ReLU) x len(hidden) -> [BN] -> dropout -> linear.

    `dropout`: one probability (half of it before each hidden layer, all of it
    before the last) or one per layer, `len(hidden) + 1` values.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (512,),
        dropout: Dropout = 0.5,
        pool: bool = True,
        bn: bool = True,
    ) -> None:
        super().__init__()
        self.pool = pool
        rates = head_dropouts(dropout, len(hidden) + 1, 0.5)
        layers: list[nn.Module] = []
        width = in_features
        for size, p in zip(hidden, rates):
            layers += [nn.BatchNorm1d(width)] if bn else []
            layers += [nn.Dropout(p), nn.Linear(width, size), nn.ReLU(inplace=True)]
            width = size
        layers += ([nn.BatchNorm1d(width)] if bn else []) + [nn.Dropout(rates[-1])]
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
    dropout: Dropout = None,
    hidden: Sequence[int] | None = None,
    bn: bool | None = None,
) -> nn.Module:
    """Build head `kind` for a trunk with `num_features` channels and an `map_size` feature map.

    `bn` None: batch norm in the dense and FCN heads only. `hidden`: the dense
    head's widths (None: 512), and the FCN head's conv widths (None: 128,
    a 3x3 conv on a 1280-channel map costs 4x more per width; pools: none,
    its high-resolution form; build `FCNHead` directly for pooled variants).
    """
    flat = num_features * map_size[0] * map_size[1]
    if kind == "gap":
        return GapHead(num_features, num_classes, head_dropouts(dropout, 1, 0.2)[0], bn=bool(bn))
    if kind == "linear":
        return LinearHead(flat, num_classes, head_dropouts(dropout, 1, 0.0)[0], bn=bool(bn))
    if kind == "dense":
        return TransferDenseHead(num_features, num_classes, hidden or (512,), dropout, pool=True, bn=bn is not False)
    if kind == "fcn":
        return FCNHead(num_features, num_classes, map_size, hidden or (128,), head_dropouts(dropout, 1, 0.2)[0],
                       bn=bn is not False)
    feature_kind(kind)  # raises with the list of heads
    raise AssertionError


class MetadataHead(nn.Module):
    """A head whose last linear layer also sees the image's metadata: `((features, meta)) -> logits`.

    The seeds' two-input model: everything of `base` up to its last linear
    layer gives the penultimate features (pooled and dropped out, or after
    the dense head's hidden layers); batch-normalised metadata columns
    `(N, M)` (`heron.data.metadata_columns`) are concatenated to them, and
    one linear layer maps both to the classes. Works for the heads that end in
    a linear layer `fc` (gap, linear, dense), not the fully convolutional one.
    """

    def __init__(self, base: nn.Module, meta_features: int) -> None:
        super().__init__()
        last = getattr(base, "fc", None)
        if not isinstance(last, nn.Linear):
            raise ValueError(f"--metadata needs a head that ends in a linear layer (gap, linear or dense), "
                             f"not {type(base).__name__}")
        base.fc = nn.Identity()  # base(x) is now the penultimate features
        self.base = base
        self.meta_features = meta_features
        self.meta_bn = nn.BatchNorm1d(meta_features)
        self.fc = nn.Linear(last.in_features + meta_features, last.out_features)

    def forward(self, inputs) -> torch.Tensor:
        if isinstance(inputs, torch.Tensor):
            raise ValueError(f"this head was trained with --metadata: it takes (features, metadata "
                             f"(N, {self.meta_features})), not the image features alone")
        x, meta = inputs
        return self.fc(torch.cat([self.base(x), self.meta_bn(meta.to(x.dtype))], dim=1))


def reset_head(head: nn.Module) -> nn.Module:
    """Re-initialise every layer of `head` (a fresh start from the current random state)."""
    for layer in head.modules():
        if layer is not head and hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
        if hasattr(layer, "reset_running_stats"):
            layer.reset_running_stats()
    return head
