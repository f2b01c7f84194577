"""Inception v3: factorised Inception blocks at three grid sizes (35, 17, 8 at 299x299).

Szegedy et al. 2015, "Rethinking the Inception Architecture". Compared with
GoogLeNet it factorises large filters (5x5 -> two 3x3, 7x7 -> 1x7 + 7x1),
shrinks the grid with blocks that pool and convolve with stride 2 in
parallel, and keeps one auxiliary classifier on the 17x17 grid. Layouts and
parameter counts match torchvision's `inception_v3` (27,161,264 with the
auxiliary classifier, 23,834,568 without), so its state dicts load here via
`heron.models.load_torchvision`. Unlike torchvision, heron never rescales the
input inside the model: preprocessing belongs to the weights' spec.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import nn

from heron.models._base import Backbone
from heron.models._registry import register
from heron.nn.heads import ClassifierHead
from heron.nn.inception import Branches
from heron.nn.layers import ConvBnAct

__all__ = ["InceptionV3", "InceptionOutputs", "inception_v3", "map_by_prefix"]

_BN_EPS = 1e-3  # the ported TensorFlow weights were trained with this epsilon


# ---------------------------------------------------------------- helpers


def _conv(in_chs: int, out_chs: int, kernel: int | tuple[int, int], stride: int = 1, pad: bool = True) -> ConvBnAct:
    """Conv-BN-ReLU; `pad=True` keeps the size at stride 1 (k // 2 per side), False is "valid"."""
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    padding = (k[0] // 2, k[1] // 2) if pad else 0
    return ConvBnAct(in_chs, out_chs, k, stride, padding=padding, bn_eps=_BN_EPS)


def map_by_prefix(keys: Iterable[str], prefixes: dict[str, str]) -> dict[str, str]:
    """Rename each key by the longest module prefix in `prefixes` that owns it.

    `{"stem.conv1": "conv1"}` turns `stem.conv1.bn.running_mean` into
    `conv1.bn.running_mean`. Every key must have an owner: a key no prefix
    claims is a gap in the table, so it raises instead of being skipped.
    """
    ordered = sorted(prefixes, key=len, reverse=True)
    mapping = {}
    for key in keys:
        owner = next((p for p in ordered if key.startswith(p + ".")), None)
        if owner is None:
            raise KeyError(f"no torchvision name for {key!r}")
        mapping[key] = prefixes[owner] + key[len(owner):]
    return mapping


# ---------------------------------------------------------------- blocks


def _pool_branch(in_chs: int, out_chs: int) -> nn.Sequential:
    return nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), _conv(in_chs, out_chs, 1))


def _split(chs: int) -> Branches:
    """1x3 and 3x1 side by side on one input: the wide 8x8 blocks' expanded filter bank."""
    return Branches(a=_conv(chs, chs, (1, 3)), b=_conv(chs, chs, (3, 1)))


def block_a(in_chs: int, pool_chs: int) -> Branches:
    """35x35 block: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg-pool -> 1x1; 224 + pool_chs out."""
    return Branches(
        branch1x1=_conv(in_chs, 64, 1),
        branch5x5=nn.Sequential(_conv(in_chs, 48, 1), _conv(48, 64, 5)),
        branch3x3dbl=nn.Sequential(_conv(in_chs, 64, 1), _conv(64, 96, 3), _conv(96, 96, 3)),
        branch_pool=_pool_branch(in_chs, pool_chs),
    )


def block_b(in_chs: int) -> Branches:
    """Grid reduction 35 -> 17: stride-2 conv and stride-2 max-pool in parallel; in_chs + 480 out."""
    return Branches(
        branch3x3=_conv(in_chs, 384, 3, stride=2, pad=False),
        branch3x3dbl=nn.Sequential(_conv(in_chs, 64, 1), _conv(64, 96, 3), _conv(96, 96, 3, stride=2, pad=False)),
        branch_pool=nn.MaxPool2d(3, stride=2),
    )


def block_c(in_chs: int, c7: int) -> Branches:
    """17x17 block: 7x7 filters factorised into 1x7 and 7x1 (c7 channels inside); 768 out."""
    return Branches(
        branch1x1=_conv(in_chs, 192, 1),
        branch7x7=nn.Sequential(_conv(in_chs, c7, 1), _conv(c7, c7, (1, 7)), _conv(c7, 192, (7, 1))),
        branch7x7dbl=nn.Sequential(
            _conv(in_chs, c7, 1),
            _conv(c7, c7, (7, 1)),
            _conv(c7, c7, (1, 7)),
            _conv(c7, c7, (7, 1)),
            _conv(c7, 192, (1, 7)),
        ),
        branch_pool=_pool_branch(in_chs, 192),
    )


def block_d(in_chs: int) -> Branches:
    """Grid reduction 17 -> 8; in_chs + 512 out."""
    return Branches(
        branch3x3=nn.Sequential(_conv(in_chs, 192, 1), _conv(192, 320, 3, stride=2, pad=False)),
        branch7x7x3=nn.Sequential(
            _conv(in_chs, 192, 1),
            _conv(192, 192, (1, 7)),
            _conv(192, 192, (7, 1)),
            _conv(192, 192, 3, stride=2, pad=False),
        ),
        branch_pool=nn.MaxPool2d(3, stride=2),
    )


def block_e(in_chs: int) -> Branches:
    """8x8 block with expanded filter banks (1x3 and 3x1 side by side); 2048 out."""
    return Branches(
        branch1x1=_conv(in_chs, 320, 1),
        branch3x3=nn.Sequential(_conv(in_chs, 384, 1), _split(384)),
        branch3x3dbl=nn.Sequential(_conv(in_chs, 448, 1), _conv(448, 384, 3), _split(384)),
        branch_pool=_pool_branch(in_chs, 192),
    )


class InceptionAux(nn.Module):
    """Side classifier on the 17x17 grid, used only while training.

    Its loss (weighted ~0.4) pushes useful gradient into the middle of the
    network. Needs a 17x17 input grid, i.e. images of at least 299x299.
    """

    def __init__(self, in_chs: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3)
        self.conv0 = _conv(in_chs, 128, 1)
        self.conv1 = _conv(128, 768, 5, pad=False)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.conv0(self.pool(x)))  # (N, 768, 1, 1) from a 17x17 grid
        return self.fc(self.flatten(self.gap(x)))  # (N, num_classes)

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(768, num_classes)


# ---------------------------------------------------------------- model


class InceptionOutputs(NamedTuple):
    """What `InceptionV3` returns in training mode with `aux_logits=True`."""

    logits: torch.Tensor
    aux: torch.Tensor


class InceptionV3(Backbone):
    """Inception v3: stem to 35x35x192, then stages of 288, 768 and 2048 channels.

    In training mode with the auxiliary classifier it returns
    `InceptionOutputs(logits, aux)`; otherwise plain logits.
    """

    first_conv = "stem.conv1a.conv"

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        include_top: bool = True,
        dropout: float = 0.5,
        aux_logits: bool = True,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(OrderedDict(
            conv1a=_conv(in_chans, 32, 3, stride=2, pad=False),
            conv2a=_conv(32, 32, 3, pad=False),
            conv2b=_conv(32, 64, 3),
            pool1=nn.MaxPool2d(3, stride=2),
            conv3b=_conv(64, 80, 1),
            conv4a=_conv(80, 192, 3, pad=False),
            pool2=nn.MaxPool2d(3, stride=2),
        ))  # fmt: skip
        self.body = nn.Sequential(OrderedDict(
            stage1=nn.Sequential(OrderedDict(
                mixed5b=block_a(192, 32), mixed5c=block_a(256, 64), mixed5d=block_a(288, 64),
            )),
            stage2=nn.Sequential(OrderedDict(
                mixed6a=block_b(288), mixed6b=block_c(768, 128), mixed6c=block_c(768, 160),
                mixed6d=block_c(768, 160), mixed6e=block_c(768, 192),
            )),
            stage3=nn.Sequential(OrderedDict(
                mixed7a=block_d(768), mixed7b=block_e(1280), mixed7c=block_e(2048),
            )),
        ))  # fmt: skip
        self.neck = nn.Identity()
        self.num_features = 2048
        self.head = ClassifierHead(2048, num_classes, dropout) if include_top else None
        use_aux = aux_logits and include_top and num_classes > 0
        self.aux = InceptionAux(768, num_classes) if use_aux else None
        _init_weights(self)

    @property
    def aux_logits(self) -> bool:
        return self.aux is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor | InceptionOutputs:
        if not (self.training and self.aux is not None and self.head is not None):
            return super().forward(x)
        x = self.body.stage2(self.body.stage1(self.stem(x)))  # (N, 768, 17, 17)
        aux = self.aux(x)
        x = self.neck(self.body.stage3(x))  # (N, 2048, 8, 8)
        return InceptionOutputs(self.forward_head(x), aux)

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        if self.aux is not None:
            if num_classes > 0:
                self.aux.reset(num_classes)
            else:
                self.aux = None

    def torchvision_key_map(self) -> dict[str, str]:
        prefixes = {f"stem.{ours}": tv for ours, tv in _STEM_NAMES.items()}
        for stage_name, stage in self.body.named_children():
            for name, block in stage.named_children():
                tv_block = f"Mixed_{name[5:]}"  # mixed5b -> Mixed_5b
                for ours, tv in _branch_names(block).items():
                    prefixes[f"body.{stage_name}.{name}.{ours}"] = f"{tv_block}.{tv}"
        if self.aux is not None:
            prefixes["aux"] = "AuxLogits"
        if self.head is not None:
            prefixes["head.fc"] = "fc"
        return map_by_prefix(self.state_dict(), prefixes)


_STEM_NAMES = {
    "conv1a": "Conv2d_1a_3x3",
    "conv2a": "Conv2d_2a_3x3",
    "conv2b": "Conv2d_2b_3x3",
    "conv3b": "Conv2d_3b_1x1",
    "conv4a": "Conv2d_4a_3x3",
}


def _branch_names(block: Branches) -> dict[str, str]:
    """Our conv paths inside one block -> torchvision's names.

    A branch with several convs numbers them from 1 (`branch5x5.1` ->
    `branch5x5_2`), a split appends its letter (`branch3x3.1.a` ->
    `branch3x3_2a`); a branch with one conv keeps the branch name.
    """
    names = {}
    for branch, module in block.named_children():
        if isinstance(module, ConvBnAct):
            names[branch] = branch
            continue
        if not isinstance(module, nn.Sequential):
            continue  # a bare pooling branch has no weights
        convs = [(i, m) for i, m in enumerate(module) if isinstance(m, (ConvBnAct, Branches))]
        for number, (i, m) in enumerate(convs, start=1):
            if isinstance(m, Branches):
                for letter, _ in m.named_children():
                    names[f"{branch}.{i}.{letter}"] = f"{branch}_{number}{letter}"
            else:
                names[f"{branch}.{i}"] = branch if len(convs) == 1 else f"{branch}_{number}"
    return names


def _init_weights(model: nn.Module) -> None:
    """Truncated-normal weights (std 0.1; 0.01 and 0.001 for the auxiliary conv and fc), BN at 1/0."""
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            std = {"aux.conv1.conv": 0.01, "aux.fc": 0.001}.get(name, 0.1)
            nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2, b=2)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------- builders


def _create_inception_v3(num_classes: int, in_chans: int, include_top: bool, **kwargs) -> InceptionV3:
    return InceptionV3(num_classes=num_classes, in_chans=in_chans, include_top=include_top, **kwargs)


@register("inception_v3")
def inception_v3(
    num_classes: int = 1000,
    in_chans: int = 3,
    include_top: bool = True,
    dropout: float = 0.5,
    aux_logits: bool = True,
    **kwargs,
) -> InceptionV3:
    """Inception v3 (27.2M parameters with its auxiliary classifier, 23.8M without); inputs >= 75x75."""
    return _create_inception_v3(
        num_classes, in_chans, include_top, dropout=dropout, aux_logits=aux_logits, **kwargs
    )
