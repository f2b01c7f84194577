"""MobileNet v1 (Howard et al. 2017) and v2 (Sandler et al. 2018): CNNs for small devices.

v1 replaces every full convolution after the stem by a depthwise separable
one (13 of them), then global average pooling and one linear layer; the
width multiplier `width_mult` thins every layer (channels = int(c * alpha),
the reference implementation's rule). v2 stacks 17 inverted residual blocks
(expand, depthwise, linear projection, residual when shapes agree) and a
final 1x1 conv to 1280 channels; its layout is torchvision's, so its
weights load by key map.

Stages are grouped by resolution: the stem halves the input, and each of the
five stages ends at strides 2, 4, 8, 16, 32.
"""

from __future__ import annotations

from torch import nn

from heron.models._base import Backbone
from heron.models._weights import copy_keys
from heron.models._registry import register
from heron.nn.blocks import DepthwiseSeparable, InvertedResidual, init_weights
from heron.nn.heads import ClassifierHead
from heron.nn.layers import ConvBnAct, make_divisible

__all__ = ["MobileNetV1", "MobileNetV2", "mobilenet_v1", "mobilenet_v2"]

# v1: (out_channels, stride) of each depthwise separable block.
V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)) + ((512, 1),) * 5 + ((1024, 2), (1024, 1))
# v2: (expand_ratio t, out_channels c, repeats n, first stride s), the paper's table 2.
V2_ROWS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _group_by_stride(blocks: list[tuple[nn.Module, int]]) -> nn.Sequential:
    """One stage per resolution: a block with stride 2 starts a new stage."""
    stages: list[list[nn.Module]] = []
    for block, stride in blocks:
        if stride > 1 or not stages:
            stages.append([])
        stages[-1].append(block)
    return nn.Sequential(*(nn.Sequential(*stage) for stage in stages))


class MobileNetV1(Backbone):
    """Stem conv (3x3/2) then 13 depthwise separable blocks, GAP and a linear layer."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        include_top: bool = True,
        dropout: float = 1e-3,
        width_mult: float = 1.0,
        act: type[nn.Module] = nn.ReLU6,
    ) -> None:
        super().__init__()
        in_chs = int(32 * width_mult)
        self.stem = ConvBnAct(in_chans, in_chs, 3, 2, act=act)
        blocks = []
        for out_chs, stride in V1_BLOCKS:
            out_chs = int(out_chs * width_mult)
            blocks.append((DepthwiseSeparable(in_chs, out_chs, stride, act=act), stride))
            in_chs = out_chs
        self.body = _group_by_stride(blocks)
        self.neck = nn.Identity()
        self.num_features = in_chs
        self.head = ClassifierHead(in_chs, num_classes, dropout) if include_top else None
        init_weights(self)


class MobileNetV2(Backbone):
    """Stem conv (3x3/2), 17 inverted residual blocks, 1x1 conv to 1280, GAP and a linear layer."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        include_top: bool = True,
        dropout: float = 0.2,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        in_chs = make_divisible(32 * width_mult)
        self.stem = ConvBnAct(in_chans, in_chs, 3, 2, act=nn.ReLU6)
        blocks = []
        for t, c, n, s in V2_ROWS:
            out_chs = make_divisible(c * width_mult)
            for i in range(n):
                stride = s if i == 0 else 1
                blocks.append((InvertedResidual(in_chs, out_chs, stride, t), stride))
                in_chs = out_chs
        self.body = _group_by_stride(blocks)
        self.num_features = make_divisible(1280 * max(1.0, width_mult))
        self.neck = ConvBnAct(in_chs, self.num_features, 1, act=nn.ReLU6)
        self.head = ClassifierHead(self.num_features, num_classes, dropout) if include_top else None
        init_weights(self)

    def torchvision_key_map(self) -> dict[str, str]:
        """features.0 stem, features.1..17 blocks, features.18 last conv, classifier.1 the linear layer."""
        key_map: dict[str, str] = {}
        unit_names = {"conv": "0", "bn": "1"}  # inside a torchvision Conv2dNormActivation

        def add(module: nn.Module, ours: str, theirs: str) -> None:
            copy_keys(module, ours, theirs, key_map)

        for part in ("conv", "bn"):
            add(getattr(self.stem, part), f"stem.{part}", f"features.0.{unit_names[part]}")
            add(getattr(self.neck, part), f"neck.{part}", f"features.{1 + sum(map(len, self.body))}.{unit_names[part]}")
        index = 1
        for i, stage in enumerate(self.body):
            for j, block in enumerate(stage):
                ours, theirs = f"body.{i}.{j}", f"features.{index}.conv"
                k = 0  # position in torchvision's block.conv Sequential
                if isinstance(block.expand, ConvBnAct):
                    add(block.expand.conv, f"{ours}.expand.conv", f"{theirs}.0.0")
                    add(block.expand.bn, f"{ours}.expand.bn", f"{theirs}.0.1")
                    k = 1
                add(block.dw.conv, f"{ours}.dw.conv", f"{theirs}.{k}.0")
                add(block.dw.bn, f"{ours}.dw.bn", f"{theirs}.{k}.1")
                add(block.project.conv, f"{ours}.project.conv", f"{theirs}.{k + 1}")
                add(block.project.bn, f"{ours}.project.bn", f"{theirs}.{k + 2}")
                index += 1
        if self.head is not None:
            add(self.head.fc, "head.fc", "classifier.1")
        return key_map


@register("mobilenet_v1")
def mobilenet_v1(
    num_classes: int = 1000, in_chans: int = 3, include_top: bool = True, dropout: float = 1e-3,
    width_mult: float = 1.0, **kwargs,
):
    """MobileNet v1; `width_mult` (alpha) in (0, 1] thins every layer. 4.2M parameters at 1.0."""
    return MobileNetV1(num_classes, in_chans, include_top, dropout, width_mult, **kwargs)


@register("mobilenet_v2")
def mobilenet_v2(
    num_classes: int = 1000, in_chans: int = 3, include_top: bool = True, dropout: float = 0.2,
    width_mult: float = 1.0, **kwargs,
):
    """MobileNet v2; torchvision-compatible at every `width_mult`. 3.5M parameters at 1.0."""
    return MobileNetV2(num_classes, in_chans, include_top, dropout, width_mult, **kwargs)
