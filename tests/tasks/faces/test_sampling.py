"""PKSampler: P distinct people x K images each, deterministic, replacement only where needed."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from heron.errors import DataError
from heron.tasks.faces.sampling import PKSampler

# Person 3 has 2 images and person 5 one: fewer than K=3, so only they are drawn with replacement.
COUNTS = {0: 6, 1: 4, 2: 9, 3: 2, 4: 5, 5: 1, 6: 3}
LABELS = [person for person, n in COUNTS.items() for _ in range(n)][::-1]  # not sorted by person


def _check_batch(batch: list[int], p: int, k: int) -> None:
    assert len(batch) == p * k and all(isinstance(i, int) for i in batch)
    people = Counter(LABELS[i] for i in batch)
    assert len(people) == p and set(people.values()) == {k}
    for person in people:
        mine = [i for i in batch if LABELS[i] == person]
        if COUNTS[person] >= k:
            assert len(set(mine)) == k  # no repeats when the person has enough images
        else:
            assert set(mine) <= {i for i, y in enumerate(LABELS) if y == person}


def test_batches_hold_p_people_with_k_images_each():
    sampler = PKSampler(LABELS, p=4, k=3, batches=40, seed=0)
    batches = list(sampler)
    assert len(sampler) == len(batches) == 40
    for batch in batches:
        _check_batch(batch, 4, 3)
    seen = Counter(LABELS[i] for batch in batches for i in batch)
    assert set(seen) == set(COUNTS)  # every person gets drawn over an epoch
    small = [b for b in batches if 5 in {LABELS[i] for i in b}]
    assert small and all(Counter(b)[LABELS.index(5)] == 3 for b in small)  # one image, repeated K times


def test_default_epoch_length_and_dataloader_use():
    sampler = PKSampler(LABELS, p=2, k=2)
    assert len(sampler) == len(LABELS) // 4
    data = torch.utils.data.TensorDataset(torch.tensor(LABELS))
    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler)
    for (labels,) in loader:
        assert labels.shape == (4,) and len(set(labels.tolist())) == 2


def test_same_seed_same_batches_and_epochs_differ():
    a = PKSampler(LABELS, p=3, k=2, batches=10, seed=7)
    b = PKSampler(LABELS, p=3, k=2, batches=10, seed=7)
    first, second = list(a), list(a)
    assert first == list(b) and second == list(b)
    assert first != second  # a new epoch, new batches
    a.set_epoch(0)
    assert list(a) == first
    assert list(PKSampler(LABELS, p=3, k=2, batches=10, seed=8)) != first


def test_too_few_people_is_a_data_error():
    with pytest.raises(DataError, match="8 different people but the data has 7"):
        PKSampler(LABELS, p=8, k=2)
    with pytest.raises(ValueError):
        PKSampler(LABELS, p=2, k=0)
