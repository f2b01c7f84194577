"""ResNet-18/34/50/101/152 (He et al. 2015), laid out as torchvision's "v1.5".

Residual blocks make very deep networks trainable: each block learns a
correction added to its input, so an identity is easy to learn and gradients
flow through the shortcuts. Stem: 7x7/2 conv + 3x3/2 max pool; four stages of
blocks at strides 4, 8, 16, 32; global average pooling + one linear layer.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from heron.models._base import Backbone
from heron.models._registry import register
from heron.nn.blocks import BasicBlock, Bottleneck, init_weights
from heron.nn.heads import ClassifierHead

__all__ = ["ResNet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]

WIDTHS = (64, 128, 256, 512)


def _stem(in_chans: int, out_chs: int = 64) -> nn.Sequential:
    """7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max pool: 224 -> 56."""
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(in_chans, out_chs, 7, 2, 3, bias=False),
        bn=nn.BatchNorm2d(out_chs),
        act=nn.ReLU(inplace=True),
        pool=nn.MaxPool2d(3, 2, 1),
    ))


def _torchvision_key(key: str) -> str:
    """One of our keys -> torchvision's, e.g. body.2.0.shortcut.bn.weight -> layer3.0.downsample.1.weight."""
    parts = key.split(".")
    if parts[0] == "stem":  # stem.conv.weight -> conv1.weight, stem.bn.* -> bn1.*
        return {"conv": "conv1", "bn": "bn1"}[parts[1]] + "." + parts[2]
    if parts[0] == "head":  # head.fc.weight -> fc.weight
        return "fc." + parts[2]
    _, stage, block, unit, layer, param = parts  # body.<stage>.<block>.<unit>.<conv|bn>.<param>
    prefix = f"layer{int(stage) + 1}.{block}."
    if unit == "shortcut":
        return prefix + {"conv": "downsample.0.", "bn": "downsample.1."}[layer] + param
    n = unit[len("conv"):]  # conv2 -> "2"
    return prefix + {"conv": f"conv{n}.", "bn": f"bn{n}."}[layer] + param


class ResNet(Backbone):
    """A stem, four stages of residual blocks, and a GAP + linear head."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        depths: tuple[int, int, int, int],
        num_classes: int = 1000,
        in_chans: int = 3,
        include_top: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.stem = _stem(in_chans, WIDTHS[0])
        stages, in_chs = [], WIDTHS[0]
        for i, (width, depth) in enumerate(zip(WIDTHS, depths)):
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(in_chs, width, stride))
                in_chs = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.body = nn.Sequential(*stages)
        self.neck = nn.Identity()
        self.num_features = in_chs
        self.head = ClassifierHead(in_chs, num_classes, dropout) if include_top else None
        init_weights(self)
        if self.head is not None and isinstance(self.head.fc, nn.Linear):
            self.head.reset(num_classes)  # PyTorch's default Linear init, as in the reference

    def torchvision_key_map(self) -> dict[str, str]:
        return {key: _torchvision_key(key) for key in self.state_dict()}


def _create_resnet(block, depths, num_classes, in_chans, include_top, dropout, **kwargs) -> ResNet:
    return ResNet(block, depths, num_classes, in_chans, include_top, dropout, **kwargs)


@register("resnet18")
def resnet18(num_classes: int = 1000, in_chans: int = 3, include_top: bool = True, dropout: float = 0.0, **kwargs):
    """ResNet-18: basic blocks (2, 2, 2, 2), 11.7M parameters."""
    return _create_resnet(BasicBlock, (2, 2, 2, 2), num_classes, in_chans, include_top, dropout, **kwargs)


@register("resnet34")
def resnet34(num_classes: int = 1000, in_chans: int = 3, include_top: bool = True, dropout: float = 0.0, **kwargs):
    """ResNet-34: basic blocks (3, 4, 6, 3), 21.8M parameters."""
    return _create_resnet(BasicBlock, (3, 4, 6, 3), num_classes, in_chans, include_top, dropout, **kwargs)


@register("resnet50")
def resnet50(num_classes: int = 1000, in_chans: int = 3, include_top: bool = True, dropout: float = 0.0, **kwargs):
    """ResNet-50: bottleneck blocks (3, 4, 6, 3), 25.6M parameters, 2048 features."""
    return _create_resnet(Bottleneck, (3, 4, 6, 3), num_classes, in_chans, include_top, dropout, **kwargs)


@register("resnet101")
def resnet101(num_classes: int = 1000, in_chans: int = 3, include_top: bool = True, dropout: float = 0.0, **kwargs):
    """ResNet-101: bottleneck blocks (3, 4, 23, 3), 44.5M parameters."""
    return _create_resnet(Bottleneck, (3, 4, 23, 3), num_classes, in_chans, include_top, dropout, **kwargs)


@register("resnet152")
def resnet152(num_classes: int = 1000, in_chans: int = 3, include_top: bool = True, dropout: float = 0.0, **kwargs):
    """ResNet-152: bottleneck blocks (3, 8, 36, 3), 60.2M parameters."""
    return _create_resnet(Bottleneck, (3, 8, 36, 3), num_classes, in_chans, include_top, dropout, **kwargs)
