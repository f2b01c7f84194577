"""Inference-time graph tidying: fold batch norm into the convolution before it.

In eval mode BatchNorm is a per-channel affine map, so it can be merged into
the preceding convolution's weight and bias: one op instead of two, the same
outputs up to float rounding. Used for prediction and feature extraction.
"""

from __future__ import annotations

import torch
from torch import nn

from heron.nn.layers import ConvBnAct

__all__ = ["fold_batchnorm"]


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight = nn.Parameter((conv.weight * scale.view(-1, 1, 1, 1)).detach())
    conv.bias = nn.Parameter(((bias - bn.running_mean) * scale + bn.bias).detach())


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Merge every ConvBnAct's BatchNorm into its conv, in place; returns `model` (eval mode)."""
    model.eval()
    for module in model.modules():
        if isinstance(module, ConvBnAct) and isinstance(module.bn, nn.BatchNorm2d):
            _fold(module.conv, module.bn)
            module.bn = nn.Identity()
    return model
