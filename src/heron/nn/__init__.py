"""Reusable network blocks: the pieces every model family is built from."""

from heron.nn.heads import ClassifierHead, DenseHead
from heron.nn.layers import Conv2dSame, ConvBnAct, make_divisible

__all__ = ["ClassifierHead", "Conv2dSame", "ConvBnAct", "DenseHead", "make_divisible"]
