"""Pseudo-labelling: the first model labels unlabelled images, the confident ones join training.

The seeds' competition trick: predict the unlabelled (or test) images with
the model trained so far, keep those it is sure of, and retrain with them
making up a fixed share of every batch, so the real labels still dominate.
On cached features the whole round costs one extraction of the unlabelled
images and a second, equally fast, head fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from heron import _distributed as distributed

__all__ = ["PseudoLabels", "check_ratio", "check_threshold", "select_confident", "MixedBatches", "pseudo_batch_split"]


@dataclass
class PseudoLabels:
    """The unlabelled images kept: their positions, predicted classes and top probabilities."""

    index: torch.Tensor  # (M,) long: positions in the unlabelled list
    labels: torch.Tensor  # (M,) long
    confidence: torch.Tensor  # (M,) float
    total: int  # unlabelled images scored

    def per_class(self, classes: list[str]) -> dict[str, int]:
        counts = torch.bincount(self.labels, minlength=len(classes)).tolist()
        return dict(zip(classes, counts))

    def summary(self, classes: list[str], threshold: float) -> str:
        counts = ", ".join(f"{name} {n}" for name, n in self.per_class(classes).items())
        return (f"pseudo-labels: {len(self.index)} of {self.total} unlabelled images reached p >= {threshold:g}"
                + (f" ({counts})" if len(self.index) else ""))


def check_threshold(threshold: float) -> None:
    """ValueError for a pseudo-label threshold outside (0, 1]."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"pseudo-label threshold must be in (0, 1], got {threshold}")


def check_ratio(ratio: float) -> None:
    """ValueError for a pseudo-label share of the batch outside [0, 1)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"pseudo-label ratio must be in [0, 1), got {ratio}")


def select_confident(probs: torch.Tensor, threshold: float) -> PseudoLabels:
    """Images of `probs (N, C)` whose top probability is at least `threshold`, with that class."""
    check_threshold(threshold)
    confidence, labels = probs.float().max(dim=1)
    keep = torch.nonzero(confidence >= threshold).flatten()
    return PseudoLabels(keep, labels[keep], confidence[keep], len(probs))


def pseudo_batch_split(batch_size: int, ratio: float) -> tuple[int, int]:
    """(labelled, pseudo) images per batch of `batch_size` for a pseudo share `ratio` in [0, 1)."""
    check_ratio(ratio)
    pseudo = min(batch_size - 1, round(batch_size * ratio))
    return batch_size - pseudo, pseudo


class MixedBatches:
    """Each labelled batch extended by exactly `per_batch` pseudo-labelled feature rows.

    `labelled` yields `(x, y)`; an epoch is one pass over it. The pseudo rows
    are drawn without replacement in a shuffled order that starts again when
    all have been used, so every batch has the same pseudo share whatever the
    two set sizes are. Rows are gathered from `features` (the cache's memory
    map) batch by batch, so RAM does not grow with the unlabelled set.
    """

    def __init__(self, labelled: Iterable, features: np.ndarray, rows: np.ndarray, labels: torch.Tensor,
                 per_batch: int) -> None:
        if per_batch < 1 or len(rows) == 0:
            raise ValueError("MixedBatches needs at least one pseudo-labelled row per batch")
        self.labelled, self.features = labelled, features
        self.rows, self.labels, self.per_batch = np.asarray(rows).reshape(-1), labels, per_batch

    def __len__(self) -> int:
        return len(self.labelled)  # type: ignore[arg-type]

    def _draws(self) -> Iterator[torch.Tensor]:
        """Positions into the pseudo rows, `per_batch` at a time, each row once per shuffled pass."""
        pending = torch.empty(0, dtype=torch.long)
        while True:
            while len(pending) < self.per_batch:
                pending = torch.cat([pending, torch.randperm(len(self.rows))])
            yield pending[: self.per_batch]
            pending = pending[self.per_batch :]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        draws = self._draws()
        for x, y in self.labelled:
            pick = next(draws)
            if distributed.is_distributed():  # rank 0's draw, split like the labelled part
                pick = distributed.broadcast_tensor(pick)[distributed.rank() :: distributed.world_size()]
            px = torch.from_numpy(np.asarray(self.features[self.rows[pick.numpy()]], dtype=np.float32))
            yield torch.cat([x, px]), torch.cat([y, self.labels[pick].to(y.dtype)])
