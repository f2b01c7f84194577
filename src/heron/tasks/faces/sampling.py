"""P x K batches for metric learning: P distinct people, K images of each.

Triplet mining inside a batch needs positives (several images of a person)
and negatives (other people) in every batch; a plain shuffled loader gives
few positives when there are many people. `PKSampler` is a batch sampler:
pass it to `torch.utils.data.DataLoader(dataset, batch_sampler=...)`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from heron.errors import DataError

__all__ = ["PKSampler"]


class PKSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of `p * k` dataset indices: `p` distinct identities, `k` indices of each.

    `labels` holds one identity per dataset item. Each batch draws `p`
    identities without replacement, then `k` of each identity's indices,
    without replacement unless that identity has fewer than `k` items (then
    with replacement, so it still fills its K slots). Indices are grouped by
    identity within a batch: [id0 x k, id1 x k, ...].

    An epoch has `batches` batches, by default len(labels) // (p * k) (at
    least 1). The order is fixed by `seed` and the epoch: each pass over the
    sampler starts the next epoch, and `set_epoch` chooses one explicitly, so
    two samplers with the same seed yield the same batches.
    """

    def __init__(self, labels: Sequence[int], p: int, k: int, batches: int | None = None,
                 seed: int = 0) -> None:
        if p < 1 or k < 1:
            raise ValueError(f"p and k must be at least 1, got p={p}, k={k}")
        self.labels = np.asarray(labels).reshape(-1)
        self.p, self.k, self.seed = int(p), int(k), int(seed)
        identities, inverse = np.unique(self.labels, return_inverse=True)
        if len(identities) < self.p:
            raise DataError(f"a batch needs {self.p} different people but the data has {len(identities)}; "
                            f"lower P (the people per batch) or add people")
        order = np.argsort(inverse, kind="stable")
        counts = np.bincount(inverse, minlength=len(identities))
        self._groups = np.split(order, np.cumsum(counts)[:-1])  # dataset indices per identity
        if batches is not None and batches < 1:
            raise ValueError(f"batches must be at least 1, got {batches}")
        self.batches = int(batches) if batches is not None else max(1, len(self.labels) // (self.p * self.k))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass yield the batches of `epoch` (as DistributedSampler does)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        for _ in range(self.batches):
            yield self._batch(rng)

    def _batch(self, rng: np.random.Generator) -> list[int]:
        batch: list[int] = []
        for identity in rng.choice(len(self._groups), size=self.p, replace=False):
            group = self._groups[identity]
            picked = rng.choice(group, size=self.k, replace=len(group) < self.k)
            batch.extend(int(i) for i in picked)
        return batch
