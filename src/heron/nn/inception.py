"""Inception blocks: parallel branches over one input, stacked along channels.

The Inception idea: rather than choosing a filter size, run 1x1, 3x3 and 5x5
convolutions and a pooling side by side and concatenate what they find; the
network learns which to use. A 1x1 "bottleneck" convolution in front of each
large filter keeps this affordable: a 5x5 convolution 192 -> 32 channels on a
28x28 map costs 28*28*32 * 5*5*192 = 120,422,400 multiplications, while
1x1 192 -> 16 then 5x5 16 -> 32 costs 12,443,648, about a tenth.

`Branches` is the generic "run these in parallel, concatenate" module (the
Inception v3 blocks are built from it); `InceptionBlock` is the GoogLeNet
module from the seeds.
"""

from __future__ import annotations

import torch
from torch import nn

from heron.nn.layers import ConvBnAct

__all__ = ["Branches", "InceptionBlock"]


class Branches(nn.Module):
    """Apply every branch to the same input and concatenate the outputs along channels.

    Branches are given as keyword arguments (their names become state-dict
    prefixes) and run in that order. Every branch must keep the spatial size
    the others produce, which is why Inception pools with stride 1 and padding.
    """

    def __init__(self, **branches: nn.Module) -> None:
        super().__init__()
        if not branches:
            raise ValueError("Branches needs at least one branch")
        for name, branch in branches.items():
            self.add_module(name, branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.children()], dim=1)  # (N, sum C_i, H, W)


class InceptionBlock(Branches):
    """The GoogLeNet Inception module: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max-pool -> 1x1.

    Output channels: `ch1x1 + ch3x3 + ch5x5 + pool_proj`. `kernel_5x5` sets the
    large filter of the third branch: 5 as in the paper; torchvision's port of
    GoogLeNet (whose weights heron loads) uses 3 there, so `googlenet` builds
    it with 3. The pooling branch ends in a 1x1 convolution because pooling
    alone would pass all `in_chs` channels through.
    """

    def __init__(
        self,
        in_chs: int,
        ch1x1: int,
        ch3x3_reduce: int,
        ch3x3: int,
        ch5x5_reduce: int,
        ch5x5: int,
        pool_proj: int,
        kernel_5x5: int = 5,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__(
            conv1x1=ConvBnAct(in_chs, ch1x1, 1, bn_eps=bn_eps),
            conv3x3=nn.Sequential(
                ConvBnAct(in_chs, ch3x3_reduce, 1, bn_eps=bn_eps),
                ConvBnAct(ch3x3_reduce, ch3x3, 3, bn_eps=bn_eps),
            ),
            conv5x5=nn.Sequential(
                ConvBnAct(in_chs, ch5x5_reduce, 1, bn_eps=bn_eps),
                ConvBnAct(ch5x5_reduce, ch5x5, kernel_5x5, bn_eps=bn_eps),
            ),
            pool=nn.Sequential(
                nn.MaxPool2d(3, stride=1, padding=1),
                ConvBnAct(in_chs, pool_proj, 1, bn_eps=bn_eps),
            ),
        )
        self.out_chs = ch1x1 + ch3x3 + ch5x5 + pool_proj
