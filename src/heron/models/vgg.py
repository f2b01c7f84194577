"""VGG-11/13/16/19 with and without batch norm (Simonyan & Zisserman 2014).

Always 3x3 convolutions with stride 1 and "same" padding, always 2x2/2 max
pooling, channels doubling 64 -> 128 -> 256 -> 512: a uniform network whose
five blocks grow in semantic level one step at a time, which is why it is
the classic choice for transfer learning and style transfer. The top pools
to 7x7 and flattens into two 4096-wide dense layers (138M parameters for
VGG-16). Each stage is one block ending in its max pool; with
`include_top=False` any input of 32x32 or more works (224 -> 512 x 7 x 7).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from heron.models._base import Backbone
from heron.models._weights import copy_keys
from heron.models._registry import register
from heron.nn.blocks import init_weights
from heron.nn.heads import DenseHead

__all__ = ["VGG"] + [f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")]

WIDTHS = (64, 128, 256, 512, 512)
# Convolutions per block for each depth.
DEPTHS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


def _conv(in_chs: int, out_chs: int, batch_norm: bool) -> nn.Sequential:
    """3x3 conv (with bias, even before BN, as in the published weights), [BN], ReLU."""
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(in_chs, out_chs, 3, 1, 1),
        bn=nn.BatchNorm2d(out_chs) if batch_norm else nn.Identity(),
        act=nn.ReLU(inplace=True),
    ))


class VGG(Backbone):
    """Five conv blocks, each ending in 2x2 max pooling, and a dense 4096-4096 top."""

    first_conv = "body.0.0.conv"

    def __init__(
        self,
        depths: tuple[int, ...],
        batch_norm: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
        include_top: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.batch_norm = batch_norm
        self.stem = nn.Identity()
        stages, in_chs = [], in_chans
        for width, depth in zip(WIDTHS, depths):
            layers = []
            for _ in range(depth):
                layers.append(_conv(in_chs, width, batch_norm))
                in_chs = width
            layers.append(nn.MaxPool2d(2, 2))
            stages.append(nn.Sequential(*layers))
        self.body = nn.Sequential(*stages)
        self.neck = nn.Identity()
        self.num_features = in_chs
        self.head = (
            DenseHead(in_chs * 7 * 7, num_classes, (4096, 4096), dropout, pool_size=7) if include_top else None
        )
        init_weights(self)

    def torchvision_key_map(self) -> dict[str, str]:
        """features.<i> counts conv, [BN], ReLU and pool modules in order; classifier.0/3/6 for the top."""
        key_map: dict[str, str] = {}
        index = 0
        for i, stage in enumerate(self.body):
            for j, layer in enumerate(stage):
                if isinstance(layer, nn.MaxPool2d):
                    index += 1
                    continue
                copy_keys(layer.conv, f"body.{i}.{j}.conv", f"features.{index}", key_map)
                if self.batch_norm:
                    copy_keys(layer.bn, f"body.{i}.{j}.bn", f"features.{index + 1}", key_map)
                index += 3 if self.batch_norm else 2
        if self.head is not None:
            linears = [j for j, m in enumerate(self.head.hidden) if isinstance(m, nn.Linear)]
            for j, tv_index in zip(linears, (0, 3)):
                copy_keys(self.head.hidden[j], f"head.hidden.{j}", f"classifier.{tv_index}", key_map)
            copy_keys(self.head.fc, "head.fc", "classifier.6", key_map)
        return key_map


def _create_vgg(depth: int, batch_norm: bool, num_classes, in_chans, include_top, dropout, **kwargs) -> VGG:
    return VGG(DEPTHS[depth], batch_norm, num_classes, in_chans, include_top, dropout, **kwargs)


@register("vgg11")
def vgg11(num_classes: int = 1000, in_chans: int = 3, include_top: bool = True, dropout: float = 0.5, **kwargs):
    """VGG-11."""
    return _create_vgg(11, False, num_classes, in_chans, include_top, dropout, **kwargs)


@register("vgg11_bn")
def vgg11_bn(num_classes: int = 1000, in_chans: int = 3, include_top: bool = True, dropout: float = 0.5, **kwargs):
    """VGG-11 with batch norm."""
    return _create_vgg(11, True, num_classes, in_chans, include_top, dropout, **kwargs)


@register("vgg13")
def vgg13(num_classes: int = 1000, in_chans: int = 3, include_top: bool = True, dropout: float = 0.5, **kwargs):
    """VGG-13."""
    return _create_vgg(13, False, num_classes, in_chans, include_top, dropout, **kwargs)


@register("vgg13_bn")
def vgg13_bn(num_classes: int = 1000, in_chans: int = 3, include_top: bool = True, dropout: float = 0.5, **kwargs):
    """VGG-13 with batch norm."""
    return _create_vgg(13, True, num_classes, in_chans, include_top, dropout, **kwargs)


@register("vgg16")
def vgg16(num_classes: int = 1000, in_chans: int = 3, include_top: bool = True, dropout: float = 0.5, **kwargs):
    """VGG-16."""
    return _create_vgg(16, False, num_classes, in_chans, include_top, dropout, **kwargs)


@register("vgg16_bn")
def vgg16_bn(num_classes: int = 1000, in_chans: int = 3, include_top: bool = True, dropout: float = 0.5, **kwargs):
    """VGG-16 with batch norm."""
    return _create_vgg(16, True, num_classes, in_chans, include_top, dropout, **kwargs)


@register("vgg19")
def vgg19(num_classes: int = 1000, in_chans: int = 3, include_top: bool = True, dropout: float = 0.5, **kwargs):
    """VGG-19."""
    return _create_vgg(19, False, num_classes, in_chans, include_top, dropout, **kwargs)


@register("vgg19_bn")
def vgg19_bn(num_classes: int = 1000, in_chans: int = 3, include_top: bool = True, dropout: float = 0.5, **kwargs):
    """VGG-19 with batch norm."""
    return _create_vgg(19, True, num_classes, in_chans, include_top, dropout, **kwargs)
