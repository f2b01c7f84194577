"""Datasets and loaders over image files that never crash an epoch on a bad file.

`ImageFiles` decodes one file per item into a uint8 tensor at the network's
size; a file that fails to decode comes back as an error record instead of an
exception, `collate_images` drops it from the batch and the caller collects
the messages (they end up in the run folder's errors.txt). Workers run one
thread each: heron owns the cores it is given.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from heron.data.images import load_image
from heron.errors import ImageError

__all__ = ["ImageFiles", "collate_images", "image_loader", "default_workers"]

Transform = Callable[[torch.Tensor], torch.Tensor]


class ImageFiles(Dataset):
    """Items `(path, target)`; returns `(image uint8 (3,h,w) | None, target, index, error | None)`.

    `transforms` may hold several views (test-time augmentation, cached
    augmented copies): the image is then a `(V, 3, h, w)` stack, decoded once.
    `min_size` lets JPEGs decode in draft mode at a reduced scale.
    """

    def __init__(
        self,
        items: Sequence[tuple[Path, object]],
        transforms: Transform | Sequence[Transform],
        min_size: int | None = None,
    ) -> None:
        self.items = list(items)
        self.multi_view = not callable(transforms)
        self.transforms = list(transforms) if self.multi_view else [transforms]
        self.min_size = min_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        path, target = self.items[index]
        try:
            img = load_image(path, min_size=self.min_size)
        except ImageError as err:
            return None, target, index, str(err)
        views = [t(img) for t in self.transforms]
        out = torch.stack(views) if self.multi_view else views[0]
        return out, target, index, None


def collate_images(batch):
    """Stack the good items; pass the bad ones along: (x, y, indices, [(index, message)])."""
    good = [b for b in batch if b[0] is not None]
    errors = [(b[2], b[3]) for b in batch if b[0] is None]
    if not good:
        return None, None, torch.empty(0, dtype=torch.long), errors
    x = torch.stack([b[0] for b in good])
    targets = [b[1] for b in good]
    y = torch.as_tensor(targets) if targets[0] is not None else None
    idx = torch.as_tensor([b[2] for b in good], dtype=torch.long)
    return x, y, idx, errors


def _single_thread_worker(_: int) -> None:
    torch.set_num_threads(1)


def default_workers() -> int:
    """Decode workers: one fewer than the cores (at least one), at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores - 1))


def image_loader(
    dataset: Dataset,
    batch_size: int = 32,
    shuffle: bool = False,
    workers: int | None = None,
    generator: torch.Generator | None = None,
) -> DataLoader:
    """A DataLoader with single-threaded workers and the error-tolerant collate."""
    workers = default_workers() if workers is None else workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=collate_images,
        worker_init_fn=_single_thread_worker if workers else None,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        generator=generator,
    )
