"""Convolutional blocks the classic families are built from.

- `BasicBlock` / `Bottleneck`: ResNet's residual units, `a[l+2] = g(F(a[l]) + shortcut(a[l]))`,
  with a 1x1 projection shortcut when the shape changes.
- `BottleneckConv`: a 1x1 convolution that shrinks the channels before an
  expensive k x k convolution (Network-in-Network / Inception's "bottleneck
  layer": 120M -> 12.4M multiplications for a 5x5 conv on 28x28x192).
- `DepthwiseSeparable`: MobileNet v1's depthwise step then pointwise step.
- `InvertedResidual`: MobileNet v2's expand -> depthwise -> linear projection,
  with a residual connection when input and output shapes agree.

Everything is made of `ConvBnAct`, so a block's state-dict keys read
`<unit>.conv.weight`, `<unit>.bn.running_mean`, ... in every family.
"""

from __future__ import annotations

from torch import nn

from heron.nn.layers import ConvBnAct

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "BottleneckConv",
    "DepthwiseSeparable",
    "InvertedResidual",
    "init_weights",
    "projection_shortcut",
]

_INPLACE = (nn.ReLU, nn.ReLU6, nn.SiLU)


def _activation(act: type[nn.Module]) -> nn.Module:
    return act(inplace=True) if act in _INPLACE else act()


def projection_shortcut(in_chs: int, out_chs: int, stride: int = 1) -> nn.Module:
    """Identity when shapes agree, else a strided 1x1 conv + BN that makes them agree."""
    if stride == 1 and in_chs == out_chs:
        return nn.Identity()
    return ConvBnAct(in_chs, out_chs, 1, stride, act=None)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions plus a shortcut (ResNet-18/34).

    `width` is the number of output channels (`expansion = 1`); the first
    convolution carries the stride.
    """

    expansion = 1

    def __init__(self, in_chs: int, width: int, stride: int = 1, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        out_chs = width * self.expansion
        self.conv1 = ConvBnAct(in_chs, width, 3, stride, act=act)
        self.conv2 = ConvBnAct(width, out_chs, 3, act=None)
        self.shortcut = projection_shortcut(in_chs, out_chs, stride)
        self.act = _activation(act)

    def forward(self, x):
        shortcut = self.shortcut(x)  # (N, out, H/s, W/s)
        x = self.conv2(self.conv1(x))  # (N, out, H/s, W/s)
        x += shortcut  # in place: x is this block's own fresh tensor
        return self.act(x)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 -> 1x1 expand (x4), plus a shortcut (ResNet-50/101/152).

    The stride sits on the 3x3 convolution ("ResNet v1.5", as in torchvision),
    so ImageNet weights published for that layout load unchanged.
    """

    expansion = 4

    def __init__(self, in_chs: int, width: int, stride: int = 1, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        out_chs = width * self.expansion
        self.conv1 = ConvBnAct(in_chs, width, 1, act=act)
        self.conv2 = ConvBnAct(width, width, 3, stride, act=act)
        self.conv3 = ConvBnAct(width, out_chs, 1, act=None)
        self.shortcut = projection_shortcut(in_chs, out_chs, stride)
        self.act = _activation(act)

    def forward(self, x):
        shortcut = self.shortcut(x)  # (N, 4w, H/s, W/s)
        x = self.conv3(self.conv2(self.conv1(x)))  # (N, 4w, H/s, W/s)
        x += shortcut  # in place: x is this block's own fresh tensor
        return self.act(x)


class BottleneckConv(nn.Sequential):
    """A 1x1 convolution down to `mid_chs`, then the k x k convolution to `out_chs`.

    Shrinking the channels first costs little accuracy and most of the
    multiplications: `H*W*mid*in + H*W*out*k*k*mid` instead of `H*W*out*k*k*in`.
    """

    def __init__(
        self, in_chs: int, mid_chs: int, out_chs: int, kernel_size: int = 5, stride: int = 1,
        act: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.reduce = ConvBnAct(in_chs, mid_chs, 1, act=act)
        self.conv = ConvBnAct(mid_chs, out_chs, kernel_size, stride, act=act)


class DepthwiseSeparable(nn.Sequential):
    """A k x k depthwise convolution (one filter per channel), then a 1x1 pointwise one.

    Costs `1/out + 1/k^2` of a full convolution's multiplications (MobileNet v1).
    """

    def __init__(
        self, in_chs: int, out_chs: int, stride: int = 1, kernel_size: int = 3,
        act: type[nn.Module] = nn.ReLU6,
    ) -> None:
        super().__init__()
        self.dw = ConvBnAct(in_chs, in_chs, kernel_size, stride, groups=in_chs, act=act)
        self.pw = ConvBnAct(in_chs, out_chs, 1, act=act)


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (3x3) -> linear projection (1x1), MobileNet v2's block.

    Widening inside the block lets it learn a richer function while only the
    narrow projection travels between blocks; the projection has no activation
    (a ReLU in a thin layer destroys information). The input is added back
    when stride is 1 and the channel count is unchanged.
    """

    def __init__(
        self, in_chs: int, out_chs: int, stride: int = 1, expand_ratio: float = 6.0,
        act: type[nn.Module] = nn.ReLU6,
    ) -> None:
        super().__init__()
        hidden = int(round(in_chs * expand_ratio))
        self.use_residual = stride == 1 and in_chs == out_chs
        self.expand = ConvBnAct(in_chs, hidden, 1, act=act) if expand_ratio != 1 else nn.Identity()
        self.dw = ConvBnAct(hidden, hidden, 3, stride, groups=hidden, act=act)
        self.project = ConvBnAct(hidden, out_chs, 1, act=None)

    def forward(self, x):
        out = self.project(self.dw(self.expand(x)))  # (N, out, H/s, W/s)
        return x + out if self.use_residual else out


def init_weights(module: nn.Module) -> None:
    """He-normal convolutions (fan out), unit batch norm, small-normal linear layers.

    The initialisation the reference ImageNet recipes used for these families,
    so a model trained from scratch here starts where theirs did.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
