"""Small reference CNNs for 1-D signals and 3-D volumes.

Convolution is not tied to images: an ECG lead is a 1-D series `(N, C, L)`
and a CT scan or a video clip is a volume `(N, C, D, H, W)`; the same conv ->
BN -> ReLU -> pool pattern applies with 1-D or 3-D filters. These nets share
the `Backbone` interface (stem, stages, head, `stages()`, `layer_groups()`),
so the training and transfer code treats them like the image models.

- `conv1d_net`: 1 input channel (one ECG lead), 5 classes (the AAMI beat
  classes N, S, V, F, Q); stem /2 and four stages /2 each: length >= 32.
- `conv3d_net`: RGB clips, 10 classes; the stem keeps the time axis and
  halves space, three stages /2 each: depth >= 8, height and width >= 16.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from heron.models._base import Backbone
from heron.models._registry import register
from heron.nn.blocks import init_weights

__all__ = ["ConvNetNd", "GlobalPoolHead", "conv1d_net", "conv3d_net"]

_LAYERS = {
    1: (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d),
    3: (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d),
}


def _conv_bn_act(dim: int, in_chs: int, out_chs: int, kernel, stride=1) -> nn.Sequential:
    """Conv, BN, ReLU in `dim` dimensions; "same" padding at stride 1 (children conv, bn, act)."""
    conv, norm, _ = _LAYERS[dim]
    kernel = (kernel,) * dim if isinstance(kernel, int) else tuple(kernel)
    return nn.Sequential(OrderedDict(
        conv=conv(in_chs, out_chs, kernel, stride, tuple(k // 2 for k in kernel), bias=False),
        bn=norm(out_chs),
        act=nn.ReLU(inplace=True),
    ))


class GlobalPoolHead(nn.Module):
    """Average over every position (time, or depth x height x width), dropout, linear."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_features = in_features
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.flatten(2).mean(dim=2)  # (N, C)
        return x if pre_logits else self.fc(self.drop(x))

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.in_features, num_classes) if num_classes > 0 else nn.Identity()


class ConvNetNd(Backbone):
    """Stem conv, then stages of two convs + max pool, then global pooling + linear."""

    def __init__(
        self,
        dim: int,
        widths: Sequence[int],
        stem_kernel,
        stem_stride,
        num_classes: int,
        in_chans: int,
        include_top: bool = True,
        dropout: float = 0.0,
        kernel: int = 3,
    ) -> None:
        super().__init__()
        pool = _LAYERS[dim][2]
        self.stem = _conv_bn_act(dim, in_chans, widths[0], stem_kernel, stem_stride)
        stages, in_chs = [], widths[0]
        for width in widths:
            stages.append(nn.Sequential(
                _conv_bn_act(dim, in_chs, width, kernel),
                _conv_bn_act(dim, width, width, kernel),
                pool(2),
            ))
            in_chs = width
        self.body = nn.Sequential(*stages)
        self.neck = nn.Identity()
        self.num_features = in_chs
        self.head = GlobalPoolHead(in_chs, num_classes, dropout) if include_top else None
        init_weights(self)


@register("conv1d_net")
def conv1d_net(num_classes: int = 5, in_chans: int = 1, include_top: bool = True, dropout: float = 0.2, **kwargs):
    """1-D CNN for signals `(N, C, L)` such as ECG: widths 32-64-128-256, kernel 5."""
    return ConvNetNd(1, (32, 64, 128, 256), 7, 2, num_classes, in_chans, include_top, dropout, kernel=5, **kwargs)


@register("conv3d_net")
def conv3d_net(num_classes: int = 10, in_chans: int = 3, include_top: bool = True, dropout: float = 0.2, **kwargs):
    """3-D CNN for volumes and clips `(N, C, D, H, W)`: widths 32-64-128, 3x3x3 kernels."""
    return ConvNetNd(3, (32, 64, 128), (3, 7, 7), (1, 2, 2), num_classes, in_chans, include_top, dropout, **kwargs)
