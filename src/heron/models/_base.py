"""The interface every CNN in heron shares, so generic code never special-cases a family.

A model is a `Backbone`: `stem` -> `body` (one child per stage) -> `neck` ->
`head`. Generic code (feature caches, freezing, CAM, style transfer,
detection) relies only on the methods below, never on a family's internals.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

__all__ = ["Backbone"]


class Backbone(nn.Module):
    """Base class: subclasses set `stem`, `body`, `neck`, `head`, `num_features`.

    - `forward_features(x)`: the convolutional trunk, `(N, num_features, h, w)`.
    - `forward_head(x, pre_logits=False)`: head on a trunk output.
    - `stages(x)`: the feature map at the end of every stage of `body`.
    - `reset_classifier(n)`: a fresh last layer for `n` classes.
    - `layer_groups()`: named groups, input to output, for freezing and
      discriminative learning rates.
    With `head = None` (built with `include_top=False`) `forward` returns the
    trunk's feature map and works at any input size.
    """

    # Dotted names of the first convolution and the last linear layer; weight
    # specs and in_chans adaptation use them.
    first_conv: str = "stem.conv"
    classifier: str = "head.fc"

    stem: nn.Module
    body: nn.Sequential
    neck: nn.Module
    head: nn.Module | None
    num_features: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.body(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.head is None:
            raise RuntimeError("model was built with include_top=False: it has no head")
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        return x if self.head is None else self.forward_head(x)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        x = self.stem(x)
        for stage in self.body:
            x = stage(x)
            outputs.append(x)
        return outputs

    def reset_classifier(self, num_classes: int) -> None:
        if self.head is None:
            raise RuntimeError("model was built with include_top=False: it has no classifier")
        self.head.reset(num_classes)

    def layer_groups(self) -> "OrderedDict[str, nn.Module]":
        groups: OrderedDict[str, nn.Module] = OrderedDict(stem=self.stem)
        for i, stage in enumerate(self.body):
            groups[f"stage{i + 1}"] = stage
        if not isinstance(self.neck, nn.Identity):
            groups["neck"] = self.neck
        if self.head is not None:
            groups["head"] = self.head
        return groups

    def trunk_groups(self) -> "OrderedDict[str, nn.Module]":
        """`layer_groups` without the classifier: the trunk from input to `forward_features`' output."""
        return OrderedDict((name, group) for name, group in self.layer_groups().items() if name != "head")

    def torchvision_key_map(self) -> dict[str, str]:
        """Map each of our state-dict keys to torchvision's key for the same tensor."""
        raise NotImplementedError(f"{type(self).__name__} has no torchvision counterpart")
