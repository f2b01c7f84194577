"""LeNet-5 (LeCun et al. 1998): the digit recogniser every CNN descends from.

`conv pool conv pool fc fc output`: 5x5 "valid" convolutions with 6 then 16
filters, each followed by 2x2 average pooling, then dense layers of 120 and
84 units and the output; tanh throughout, as in its time. On a 1x32x32 input
the maps go 28x28x6 -> 14x14x6 -> 10x10x16 -> 5x5x16 = 400 features, 61,706
parameters in all: height and width shrink while channels grow. Every filter
here sees every channel (the original's sparse C3 wiring is left out, as in
most modern retellings).
"""

from __future__ import annotations

from torch import nn

from heron.models._base import Backbone
from heron.models._registry import register
from heron.nn.heads import DenseHead
from heron.nn.layers import ConvBnAct

__all__ = ["LeNet5", "lenet5"]


class LeNet5(Backbone):
    """Two stages (5x5 conv, activation, 2x2 average pool) and a 120-84 dense top.

    The top average-pools to 5x5 first, which changes nothing at 32x32 and
    lets 28x28 digits through unpadded.
    """

    first_conv = "body.0.0.conv"

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        include_top: bool = True,
        dropout: float = 0.0,
        act: type[nn.Module] = nn.Tanh,
    ) -> None:
        super().__init__()
        self.stem = nn.Identity()
        self.body = nn.Sequential(
            nn.Sequential(ConvBnAct(in_chans, 6, 5, padding=0, bn=False, act=act), nn.AvgPool2d(2)),
            nn.Sequential(ConvBnAct(6, 16, 5, padding=0, bn=False, act=act), nn.AvgPool2d(2)),
        )
        self.neck = nn.Identity()
        self.num_features = 16
        self.head = (
            DenseHead(16 * 5 * 5, num_classes, (120, 84), dropout, pool_size=5, act=act) if include_top else None
        )


@register("lenet5")
def lenet5(num_classes: int = 10, in_chans: int = 1, include_top: bool = True, dropout: float = 0.0, **kwargs):
    """LeNet-5 for 1x32x32 digits: 61,706 parameters with 10 classes."""
    return LeNet5(num_classes, in_chans, include_top, dropout, **kwargs)
