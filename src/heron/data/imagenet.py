"""ImageNet-1k class names, in the order every ImageNet classifier's logits use.

Copied once from torchvision's weight metadata (`ResNet50_Weights.IMAGENET1K_V1.meta["categories"]`,
a test checks they still agree) into `imagenet_classes.txt`, so reading them
does not import torchvision.
"""

from __future__ import annotations

from importlib.resources import files

__all__ = ["IMAGENET_CATEGORIES"]

IMAGENET_CATEGORIES: tuple[str, ...] = tuple(
    files("heron.data").joinpath("imagenet_classes.txt").read_text(encoding="utf-8").splitlines()
)
