"""The face encoder: any zoo trunk, pooled, projected to a unit-length embedding.

`FaceEncoder` takes images as floats in [0, 1] (`(N, 3, H, W)`) and returns
`(N, dim)` L2-normalised embeddings, so the Euclidean distance between two
faces lies in [0, 2]. Mean/std travel as buffers: its state dict
(`model.safetensors` in a face run) is the complete encoder.

Training while the trunk is frozen works on the cached form: `features(x)`
is what the feature cache stores (the trunk's map, globally average pooled)
and `embed_features(feats)` is the trainable rest.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from heron.data.transforms import Preprocessing
from heron.models import build
from heron.nn.modes import batchnorm_eval

__all__ = ["FaceEncoder", "PooledFeatures", "build_encoder"]


class FaceEncoder(nn.Module):
    """normalise -> backbone.forward_features -> global average pool -> Linear(C, dim) -> L2 normalise."""

    def __init__(self, backbone: nn.Module, channels: int, dim: int = 128,
                 mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
                 std: tuple[float, float, float] = (0.229, 0.224, 0.225),
                 freeze_bn_stats: bool = True) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(channels, dim)
        self.dim = dim
        self.freeze_bn_stats = freeze_bn_stats
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> "FaceEncoder":
        """Train mode; the trunk's batch norms keep their statistics when `freeze_bn_stats`.

        P x K batches hold few identities; their batch statistics would
        replace well-estimated ones and shift the features under the head.
        """
        super().train(mode)
        if mode and self.freeze_bn_stats:
            batchnorm_eval(self.backbone)
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features `(N, C)` of images `x` in [0, 1]: the cached form."""
        fmap = self.backbone.forward_features((x - self.mean) / self.std)  # (N, C, h, w)
        return fmap.mean(dim=(2, 3))  # (N, C)

    def embed_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Unit-length embeddings `(N, dim)` of pooled trunk features `(N, C)`."""
        return F.normalize(self.head(feats), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-length embeddings `(N, dim)` of images `x` `(N, 3, H, W)` in [0, 1]."""
        return self.embed_features(self.features(x))

    def layer_groups(self) -> "OrderedDict[str, nn.Module]":
        """The backbone's groups from input to output, then the projection as "head" (for freezing)."""
        groups = OrderedDict(self.backbone.layer_groups())
        groups.pop("head", None)
        groups["head"] = self.head
        return groups


def trunk_channels(backbone: nn.Module, size: tuple[int, int]) -> int:
    """Channels of the trunk's last feature map at input `size` (one dry forward)."""
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        fmap = backbone.forward_features(torch.zeros(1, 3, *size))  # (1, C, h, w)
    backbone.train(was_training)
    return int(fmap.shape[1])


def build_encoder(arch: str = "efficientnet_lite0", weights: str | None = "imagenet", dim: int = 128,
                  size: int | None = None, preprocessing: Preprocessing | None = None,
                  seed: int | None = None) -> tuple[FaceEncoder, Preprocessing]:
    """A FaceEncoder on the zoo trunk `arch` and the preprocessing its weights expect.

    `size` overrides the weights' input side (smaller is faster); a saved
    run passes its `preprocessing` instead. `seed` makes the new projection's
    initial weights repeatable.
    """
    backbone = build(arch, weights=weights, include_top=False, in_chans=3)
    pre = preprocessing or Preprocessing.from_spec(getattr(backbone, "pretrained_cfg", None), size)
    channels = trunk_channels(backbone, pre.size)
    if seed is not None:
        torch.manual_seed(seed)
    encoder = FaceEncoder(backbone, channels, dim, pre.mean, pre.std)
    return encoder, pre


class PooledFeatures(nn.Module):
    """An encoder's pooled trunk features, L2-normalised, with no projection: the untrained baseline.

    What "the pretrained network + cosine 1-NN" means when a trained face
    encoder is compared with doing no metric learning at all (unit vectors, so
    Euclidean order is cosine order).
    """

    def __init__(self, encoder: FaceEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.dim = encoder.head.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encoder.features(x), dim=1)
