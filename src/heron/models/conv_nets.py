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
- `fcn`: the fully convolutional network of Wang, Yan & Oates, "Time Series
  Classification from Scratch with Deep Neural Networks" (2017): three
  conv-BN-ReLU blocks, 128-256-128 filters of 8-5-3 taps, no pooling, no
  stride ("same" padding keeps the length), global average pooling, linear.
  Any length >= 1; with GAP before the linear layer, CAM reads it over time.
- `conv1d_resnet`: the same paper's ResNet (not "resnet1d": `names("resnet*")`
  means the ImageNet ResNets): three residual blocks of 64-128-128
  filters, each three convs of 8-5-3 taps with BN (ReLU between and after the
  sum), the shortcut a 1x1 conv + BN when the width changes (BN alone
  otherwise), then GAP and linear.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from heron.models._base import Backbone
from heron.models._registry import register
from heron.nn.blocks import init_weights

__all__ = ["ConvNetNd", "GlobalPoolHead", "SeriesFCN", "SeriesResNet", "conv1d_net", "conv1d_resnet", "conv3d_net",
           "fcn"]

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


# ---------------------------------------------------------------- Wang et al. (2017): FCN and ResNet for series

_SERIES_KERNELS = (8, 5, 3)


def _same_conv_bn(in_chs: int, out_chs: int, kernel: int, act: bool = True) -> nn.Sequential:
    """1-D conv with "same" padding (an even kernel pads one more on the right), BN, optional ReLU."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if kernel % 2 == 0:  # torch's padding="same" would copy the input for an even kernel; pad once instead
        layers["pad"] = nn.ConstantPad1d((kernel // 2 - 1, kernel // 2), 0.0)
    layers["conv"] = nn.Conv1d(in_chs, out_chs, kernel, padding=kernel // 2 if kernel % 2 else 0, bias=False)
    layers["bn"] = nn.BatchNorm1d(out_chs)
    if act:
        layers["act"] = nn.ReLU(inplace=True)
    return nn.Sequential(layers)


class SeriesFCN(Backbone):
    """Conv-BN-ReLU blocks at full length (stem = the first), GAP, linear: `(N, C, L) -> (N, classes)`."""

    def __init__(self, widths: Sequence[int] = (128, 256, 128), kernels: Sequence[int] = _SERIES_KERNELS,
                 num_classes: int = 2, in_chans: int = 1, include_top: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = _same_conv_bn(in_chans, widths[0], kernels[0])
        self.body = nn.Sequential(*[_same_conv_bn(a, b, k) for a, b, k in zip(widths[:-1], widths[1:], kernels[1:])])
        self.neck = nn.Identity()
        self.num_features = widths[-1]
        self.head = GlobalPoolHead(widths[-1], num_classes, dropout) if include_top else None
        init_weights(self)


class _ResidualBlock1d(nn.Module):
    """Three same-length convs (BN each, ReLU after the first two) plus a shortcut, ReLU after the sum."""

    def __init__(self, in_chs: int, out_chs: int, kernels: Sequence[int]) -> None:
        super().__init__()
        self.conv1 = _same_conv_bn(in_chs, out_chs, kernels[0])
        self.conv2 = _same_conv_bn(out_chs, out_chs, kernels[1])
        self.conv3 = _same_conv_bn(out_chs, out_chs, kernels[2], act=False)
        if in_chs != out_chs:
            self.shortcut = nn.Sequential(OrderedDict(conv=nn.Conv1d(in_chs, out_chs, 1, bias=False),
                                                      bn=nn.BatchNorm1d(out_chs)))
        else:
            self.shortcut = nn.Sequential(OrderedDict(bn=nn.BatchNorm1d(out_chs)))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.conv2(self.conv1(x)))  # (N, out, L)
        return self.act(out + self.shortcut(x))


class SeriesResNet(Backbone):
    """Residual blocks at full length (no stem: the first block reads the input), GAP, linear."""

    first_conv = "body.0.conv1.conv"

    def __init__(self, widths: Sequence[int] = (64, 128, 128), kernels: Sequence[int] = _SERIES_KERNELS,
                 num_classes: int = 2, in_chans: int = 1, include_top: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = nn.Identity()
        blocks, in_chs = [], in_chans
        for width in widths:
            blocks.append(_ResidualBlock1d(in_chs, width, kernels))
            in_chs = width
        self.body = nn.Sequential(*blocks)
        self.neck = nn.Identity()
        self.num_features = in_chs
        self.head = GlobalPoolHead(in_chs, num_classes, dropout) if include_top else None
        init_weights(self)

    def layer_groups(self) -> "OrderedDict[str, nn.Module]":
        groups = super().layer_groups()
        del groups["stem"]  # an Identity: no parameters to freeze or train
        return groups


@register("fcn")
def fcn(num_classes: int = 2, in_chans: int = 1, include_top: bool = True, dropout: float = 0.0, **kwargs):
    """Wang et al.'s fully convolutional net for series `(N, C, L)`: 128-256-128 filters, kernels 8-5-3, GAP."""
    return SeriesFCN(num_classes=num_classes, in_chans=in_chans, include_top=include_top, dropout=dropout, **kwargs)


@register("conv1d_resnet")
def conv1d_resnet(num_classes: int = 2, in_chans: int = 1, include_top: bool = True, dropout: float = 0.0, **kwargs):
    """Wang et al.'s residual net for series `(N, C, L)`: blocks of 64-128-128 filters, kernels 8-5-3, GAP."""
    return SeriesResNet(num_classes=num_classes, in_chans=in_chans, include_top=include_top, dropout=dropout, **kwargs)
