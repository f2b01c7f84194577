"""ImageNet-1k class names, in the order every ImageNet classifier's logits use.

Taken from torchvision's weight metadata rather than typed out, so the names
and their order are exactly the ones torchvision's pretrained models report.
"""

from __future__ import annotations

from torchvision.models import ResNet50_Weights

__all__ = ["IMAGENET_CATEGORIES"]

IMAGENET_CATEGORIES: tuple[str, ...] = tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
