"""Reusable network blocks: the pieces every model family is built from."""

from heron.nn.blocks import (
    BasicBlock,
    Bottleneck,
    BottleneckConv,
    DepthwiseSeparable,
    InvertedResidual,
    init_weights,
    projection_shortcut,
)
from heron.nn.heads import ClassifierHead, DenseHead
from heron.nn.inception import Branches, InceptionBlock
from heron.nn.layers import Conv2dSame, ConvBnAct, make_divisible

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "BottleneckConv",
    "Branches",
    "ClassifierHead",
    "Conv2dSame",
    "ConvBnAct",
    "DenseHead",
    "DepthwiseSeparable",
    "InceptionBlock",
    "InvertedResidual",
    "init_weights",
    "make_divisible",
    "projection_shortcut",
]
