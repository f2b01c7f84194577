"""GoogLeNet (Inception v1): nine Inception modules, two optional side classifiers.

Szegedy et al. 2014, "Going Deeper with Convolutions", in the layout of
torchvision's `googlenet` (6,624,904 parameters; 13,004,888 with the two side
classifiers), so its state dicts load here via
`heron.models.load_torchvision`. Like torchvision's port, the "5x5" branch of
each Inception module uses a 3x3 filter. Unlike torchvision, heron never
rescales the input inside the model: preprocessing belongs to the weights.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import nn

from heron.models._base import Backbone
from heron.models._registry import register
from heron.models.inception import map_by_prefix
from heron.nn.heads import ClassifierHead
from heron.nn.inception import InceptionBlock
from heron.nn.layers import ConvBnAct

__all__ = ["GoogLeNet", "GoogLeNetOutputs", "googlenet"]

_BN_EPS = 1e-3

# Per stage: (max-pool kernel in front or None, Inception modules as
# (name, in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj)). At 224x224
# the stages run at 28x28, 14x14 and 7x7.
_STAGES = (
    (None, (
        ("inception3a", 192, 64, 96, 128, 16, 32, 32),
        ("inception3b", 256, 128, 128, 192, 32, 96, 64),
    )),
    (3, (
        ("inception4a", 480, 192, 96, 208, 16, 48, 64),
        ("inception4b", 512, 160, 112, 224, 24, 64, 64),
        ("inception4c", 512, 128, 128, 256, 24, 64, 64),
        ("inception4d", 512, 112, 144, 288, 32, 64, 64),
        ("inception4e", 528, 256, 160, 320, 32, 128, 128),
    )),
    (2, (
        ("inception5a", 832, 256, 160, 320, 32, 128, 128),
        ("inception5b", 832, 384, 192, 384, 48, 128, 128),
    )),
)  # fmt: skip

# Our module prefixes -> torchvision's.
_STEM_NAMES = {"stem.conv1": "conv1", "stem.conv2": "conv2", "stem.conv3": "conv3"}
_BRANCH_NAMES = {"conv1x1": "branch1", "conv3x3": "branch2", "conv5x5": "branch3", "pool": "branch4"}


class GoogLeNetAux(nn.Module):
    """Side classifier (the seeds' green branches): pool to 4x4, 1x1 conv to 128, two dense layers.

    Used only while training: its loss (weighted 0.3) checks that features in
    the middle of the network already predict the class, which fights
    vanishing gradients and overfitting.
    """

    def __init__(self, in_chs: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.conv = ConvBnAct(in_chs, 128, 1, bn_eps=_BN_EPS)
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.conv(self.pool(x)))  # (N, 2048)
        return self.fc2(self.drop(self.act(self.fc1(x))))  # (N, num_classes)

    def reset(self, num_classes: int) -> None:
        self.fc2 = nn.Linear(1024, num_classes)


class GoogLeNetOutputs(NamedTuple):
    """What `GoogLeNet` returns in training mode with `aux_logits=True` (torchvision's order)."""

    logits: torch.Tensor
    aux2: torch.Tensor
    aux1: torch.Tensor


def _stage(pool_kernel: int | None, modules: tuple, kernel_5x5: int) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if pool_kernel is not None:
        layers["pool"] = nn.MaxPool2d(pool_kernel, stride=2, ceil_mode=True)
    for name, *channels in modules:
        layers[name] = InceptionBlock(*channels, kernel_5x5=kernel_5x5, bn_eps=_BN_EPS)
    return nn.Sequential(layers)


class GoogLeNet(Backbone):
    """GoogLeNet: stem to 28x28x192 (stride 8), then stages of 480, 832 and 1024 channels.

    With `aux_logits=True`, in training mode, `forward` returns
    `GoogLeNetOutputs(logits, aux2, aux1)`: side classifiers after
    inception4a (aux1) and inception4d (aux2). In eval mode, plain logits.
    """

    first_conv = "stem.conv1.conv"

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        include_top: bool = True,
        dropout: float = 0.2,
        aux_logits: bool = False,
        dropout_aux: float = 0.7,
        kernel_5x5: int = 3,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(OrderedDict(
            conv1=ConvBnAct(in_chans, 64, 7, stride=2, bn_eps=_BN_EPS),
            pool1=nn.MaxPool2d(3, stride=2, ceil_mode=True),
            conv2=ConvBnAct(64, 64, 1, bn_eps=_BN_EPS),
            conv3=ConvBnAct(64, 192, 3, bn_eps=_BN_EPS),
            pool2=nn.MaxPool2d(3, stride=2, ceil_mode=True),
        ))  # fmt: skip
        self.body = nn.Sequential(OrderedDict(
            (f"stage{i}", _stage(pool, modules, kernel_5x5)) for i, (pool, modules) in enumerate(_STAGES, start=1)
        ))  # fmt: skip
        self.neck = nn.Identity()
        self.num_features = 1024
        self.head = ClassifierHead(1024, num_classes, dropout) if include_top else None
        use_aux = aux_logits and include_top and num_classes > 0
        self.aux1 = GoogLeNetAux(512, num_classes, dropout_aux) if use_aux else None
        self.aux2 = GoogLeNetAux(528, num_classes, dropout_aux) if use_aux else None
        _init_weights(self)

    @property
    def aux_logits(self) -> bool:
        return self.aux1 is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        if not (self.training and self.aux1 is not None and self.head is not None):
            return super().forward(x)
        x = self.body.stage1(self.stem(x))  # (N, 480, 28, 28)
        for name, block in self.body.stage2.named_children():
            x = block(x)  # (N, C, 14, 14)
            if name == "inception4a":
                aux1 = self.aux1(x)
            elif name == "inception4d":
                aux2 = self.aux2(x)
        x = self.neck(self.body.stage3(x))  # (N, 1024, 7, 7)
        return GoogLeNetOutputs(self.forward_head(x), aux2, aux1)

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        if self.aux1 is not None:
            if num_classes > 0:
                self.aux1.reset(num_classes)
                self.aux2.reset(num_classes)
            else:
                self.aux1 = self.aux2 = None

    def torchvision_key_map(self) -> dict[str, str]:
        prefixes = dict(_STEM_NAMES)
        for stage_name, stage in self.body.named_children():
            for name, block in stage.named_children():
                if isinstance(block, InceptionBlock):  # the stage's max-pool has no weights
                    for ours, tv in _BRANCH_NAMES.items():
                        prefixes[f"body.{stage_name}.{name}.{ours}"] = f"{name}.{tv}"
        if self.aux1 is not None:
            prefixes.update(aux1="aux1", aux2="aux2")
        if self.head is not None:
            prefixes["head.fc"] = "fc"
        return map_by_prefix(self.state_dict(), prefixes)


def _init_weights(model: nn.Module) -> None:
    """Truncated-normal weights with std 0.01 for conv and linear layers, BN at 1/0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _create_googlenet(num_classes: int, in_chans: int, include_top: bool, **kwargs) -> GoogLeNet:
    return GoogLeNet(num_classes=num_classes, in_chans=in_chans, include_top=include_top, **kwargs)


@register("googlenet")
def googlenet(
    num_classes: int = 1000,
    in_chans: int = 3,
    include_top: bool = True,
    dropout: float = 0.2,
    aux_logits: bool = False,
    **kwargs,
) -> GoogLeNet:
    """GoogLeNet / Inception v1 (6.6M parameters; 13.0M with `aux_logits=True`)."""
    return _create_googlenet(num_classes, in_chans, include_top, dropout=dropout, aux_logits=aux_logits, **kwargs)
