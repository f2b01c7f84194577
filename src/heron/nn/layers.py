"""Small building layers shared by every model family."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvBnAct", "Conv2dSame", "make_divisible"]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor`, never dropping below 90%.

    The rule MobileNet v2 and EfficientNet use when a width multiplier scales
    the channels, so weights published for them fit our layers exactly.
    """
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding (extra pixel at the bottom/right).

    Networks trained in TensorFlow pad asymmetrically when a strided kernel does
    not divide the input evenly; symmetric PyTorch padding shifts every feature
    map by half a pixel and costs accuracy with their weights.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        pad_h = self._same_pad(ih, self.kernel_size[0], self.stride[0], self.dilation[0])
        pad_w = self._same_pad(iw, self.kernel_size[1], self.stride[1], self.dilation[1])
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    @staticmethod
    def _same_pad(size: int, kernel: int, stride: int, dilation: int) -> int:
        out = math.ceil(size / stride)
        return max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


class ConvBnAct(nn.Sequential):
    """Convolution, batch norm, activation: the unit every CNN here is built of.

    `padding=None` keeps the spatial size at stride 1 (k // 2); `"same"` selects
    TensorFlow-style asymmetric padding. `act=None` leaves the output linear
    (the projection of an inverted residual). Children are named conv, bn, act.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | str | None = None,
        groups: int = 1,
        act: type[nn.Module] | None = nn.ReLU,
        bn: bool = True,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if padding == "same":
            self.conv = Conv2dSame(in_chs, out_chs, kernel_size, stride, groups=groups, bias=not bn)
        else:
            pad = kernel_size // 2 if padding is None else padding
            self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, pad, groups=groups, bias=not bn)
        self.bn = nn.BatchNorm2d(out_chs, eps=bn_eps, momentum=bn_momentum) if bn else nn.Identity()
        self.act = act(inplace=True) if act in (nn.ReLU, nn.ReLU6, nn.SiLU) else (act() if act else nn.Identity())
