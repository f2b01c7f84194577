"""Classification losses with label smoothing, for one label per image or several.

Label smoothing (Szegedy et al.) trains against targets that keep a little
probability off the labelled class: `(1 - s)` on it, `s` spread evenly over
all classes. The network is then never pushed towards infinite logits, which
regularises it and keeps its probabilities honest for log loss.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["classification_loss", "SmoothedBCEWithLogits"]


class SmoothedBCEWithLogits(nn.Module):
    """Binary cross-entropy on logits against multi-hot targets smoothed to `y (1 - s) + s / 2`."""

    def __init__(self, smoothing: float = 0.0) -> None:
        super().__init__()
        self.smoothing = float(smoothing)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.float() * (1.0 - self.smoothing) + self.smoothing / 2
        return nn.functional.binary_cross_entropy_with_logits(logits, targets)


def classification_loss(multilabel: bool = False, label_smoothing: float = 0.0) -> nn.Module:
    """Cross-entropy (binary cross-entropy for multi-label), with `label_smoothing` in [0, 1)."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {label_smoothing}")
    if multilabel:
        return SmoothedBCEWithLogits(label_smoothing) if label_smoothing else nn.BCEWithLogitsLoss()
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
