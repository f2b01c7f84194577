"""The whole transfer-learning network: normalisation, pretrained trunk, new head.

`ClassifierModel` takes images as floats in [0, 1] (`(N, 3, H, W)`), so its
state dict (`model.safetensors` in a run folder) is the complete model:
mean/std travel as buffers, nothing heron-specific is pickled.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from heron.nn.modes import batchnorm_eval

__all__ = ["ClassifierModel"]


class ClassifierModel(nn.Module):
    """normalise -> backbone.forward_features -> head.

    The head takes the trunk's map as it is (it pools or flattens it as its
    cached features were), so gap and fcn heads run at any input size;
    `features` is the cached form the head trained on.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        feature_kind: str = "pooled",
        freeze_bn_stats: bool = False,
    ) -> None:
        super().__init__()
        self.freeze_bn_stats = freeze_bn_stats
        self.backbone = backbone
        self.head = head
        self.feature_kind = feature_kind
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> "ClassifierModel":
        """Train mode; the trunk's batch norms keep their ImageNet statistics when `freeze_bn_stats`.

        Fine-tuning with small batches would otherwise replace well-estimated
        running statistics with noisy ones (and, with TensorFlow-trained
        weights' slow momentum, leave them lagging behind the changed weights):
        the features the head was trained on would shift under it.
        """
        super().train(mode)
        if mode and self.freeze_bn_stats:
            batchnorm_eval(self.backbone)
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the feature cache stores: `(N, C)` pooled or `(N, C*h*w)` flattened."""
        x = (x - self.mean) / self.std
        fmap = self.backbone.forward_features(x)  # (N, C, h, w)
        return fmap.mean(dim=(2, 3)) if self.feature_kind == "pooled" else fmap.flatten(1)

    def forward(self, x: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of images `x`; `meta` `(N, M)`: the metadata columns a `--metadata` head also takes."""
        fmap = self.backbone.forward_features((x - self.mean) / self.std)  # (N, C, h, w)
        return self.head(fmap if meta is None else (fmap, meta))  # every head takes the map: any size for fcn/gap

    def layer_groups(self) -> "OrderedDict[str, nn.Module]":
        """The backbone's groups from input to output, then the head."""
        groups = OrderedDict(self.backbone.layer_groups())
        groups.pop("head", None)
        groups["head"] = self.head
        return groups
