"""AlexNet (Krizhevsky et al. 2012), in torchvision's single-GPU layout.

Five convolutions with large early strides (11x11/4), ReLU, overlapping 3x3/2
max pooling, then a 6x6 average-pooled grid flattened into two 4096-wide
dense layers with dropout: about 61M parameters, most of them in the top.
No local response normalisation (it barely helps, and torchvision's weights
were trained without it). Inputs of 63x63 or more.
"""

from __future__ import annotations

from torch import nn

from heron.models._base import Backbone
from heron.models._weights import copy_keys
from heron.models._registry import register
from heron.nn.heads import DenseHead
from heron.nn.layers import ConvBnAct

__all__ = ["AlexNet", "alexnet"]

# Each stage: (out_channels, kernel, stride, padding) per conv, then a 3x3/2 max pool.
STAGES = (
    ((64, 11, 4, 2),),
    ((192, 5, 1, 2),),
    ((384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1)),
)


class AlexNet(Backbone):
    """Three stages (each ending in max pooling) and a dense 4096-4096 top."""

    first_conv = "body.0.0.conv"

    def __init__(
        self, num_classes: int = 1000, in_chans: int = 3, include_top: bool = True, dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.stem = nn.Identity()
        stages, in_chs = [], in_chans
        for convs in STAGES:
            layers: list[nn.Module] = []
            for out_chs, k, stride, pad in convs:
                layers.append(ConvBnAct(in_chs, out_chs, k, stride, padding=pad, bn=False))
                in_chs = out_chs
            layers.append(nn.MaxPool2d(3, 2))
            stages.append(nn.Sequential(*layers))
        self.body = nn.Sequential(*stages)
        self.neck = nn.Identity()
        self.num_features = in_chs
        self.head = (
            DenseHead(in_chs * 6 * 6, num_classes, (4096, 4096), dropout, pool_size=6, dropout_first=True)
            if include_top else None
        )  # PyTorch's default initialisation, as in the reference implementation

    def torchvision_key_map(self) -> dict[str, str]:
        """features.<i> for the convs (ReLU and pools take indices too), classifier.1/4/6 for the top."""
        key_map: dict[str, str] = {}
        index = 0
        for i, stage in enumerate(self.body):
            for j, layer in enumerate(stage):
                if isinstance(layer, ConvBnAct):
                    copy_keys(layer.conv, f"body.{i}.{j}.conv", f"features.{index}", key_map)
                    index += 2  # conv, ReLU
                else:
                    index += 1  # max pool
        if self.head is not None:
            linears = [j for j, m in enumerate(self.head.hidden) if isinstance(m, nn.Linear)]
            for j, tv_index in zip(linears, (1, 4)):
                copy_keys(self.head.hidden[j], f"head.hidden.{j}", f"classifier.{tv_index}", key_map)
            copy_keys(self.head.fc, "head.fc", "classifier.6", key_map)
        return key_map


@register("alexnet")
def alexnet(num_classes: int = 1000, in_chans: int = 3, include_top: bool = True, dropout: float = 0.5, **kwargs):
    """AlexNet: 61.1M parameters, 256 x 6 x 6 features at 224 x 224."""
    return AlexNet(num_classes, in_chans, include_top, dropout, **kwargs)
