"""Backbone surgery for sharper maps: the last downsampling step traded for dilation.

A trunk's last feature map is coarse (7x7 at 224 for stride 32), so heatmaps
drawn from it are blocky. `dilate_last_stride` removes the stride of the last
stage that downsamples (stride-2 convs become stride 1, a 2x2 max pool
becomes a no-op) and dilates every later convolution by 2, so each of them
still sees the same neighbourhood in image terms (the "atrous" trick of
DeepLab). The map doubles in each direction with the same weights; features
stay close to the originals, so a head trained on the original trunk still
applies. It is the strided-conv counterpart of the seeds' "remove the last
max pool" for VGG, and it works through the model interface only
(`trunk_groups()`), so every zoo family gets it.
"""

from __future__ import annotations

from torch import nn

from heron.nn.layers import Conv2dSame

__all__ = ["dilate_last_stride"]

_POOLS = (nn.MaxPool2d, nn.AvgPool2d)


def _stride(module: nn.Module) -> int:
    """The largest stride of a conv or pooling layer; 1 for every other module."""
    if not isinstance(module, (nn.Conv2d, *_POOLS)):
        return 1
    stride = module.stride
    return max(stride) if isinstance(stride, tuple) else int(stride or 1)


def _pad_same(conv: nn.Conv2d) -> None:
    """Padding that keeps a stride-1 conv's output the size of its input (Conv2dSame computes its own)."""
    if not isinstance(conv, Conv2dSame):
        conv.padding = tuple(d * (k - 1) // 2 for d, k in zip(conv.dilation, conv.kernel_size))


def _dilate(conv: nn.Conv2d, factor: int) -> None:
    """Multiply `conv`'s dilation by `factor`, padding so its output keeps its size."""
    conv.dilation = tuple(d * factor for d in conv.dilation)
    _pad_same(conv)


def dilate_last_stride(backbone: nn.Module) -> nn.Module:
    """In place: the last stage that downsamples by 2 no longer does; later convs are dilated by 2.

    Returns `backbone`, whose `forward_features` map is then twice as large
    in each direction (7x7 -> 14x14 at 224 for EfficientNet-Lite0 and ResNet).
    Raises ValueError when the trunk never downsamples.
    """
    groups = list(backbone.trunk_groups().values())
    strided = [i for i, g in enumerate(groups) if any(_stride(m) > 1 for m in g.modules())]
    if not strided:
        raise ValueError(f"{type(backbone).__name__}: no strided layer to remove")
    after = False
    for group in groups[strided[-1]:]:
        for module in group.modules():
            if _stride(module) > 1:
                _remove_stride(module)
                after = True
            elif after and isinstance(module, nn.Conv2d) and max(module.kernel_size) > 1:
                _dilate(module, 2)
    return backbone


def _remove_stride(module: nn.Module) -> None:
    """A stride-2 conv becomes stride 1; a pool becomes the identity (kernel 1, stride 1)."""
    if isinstance(module, nn.Conv2d):
        module.stride = (1, 1)
        _pad_same(module)
    else:  # a pooling layer
        module.kernel_size, module.stride, module.padding = 1, 1, 0
