"""Run the frozen trunk once over a set of images and keep the features in the cache.

Decoding runs in worker processes (JPEG draft mode, uint8 tensors) while the
main process runs the trunk in inference mode with channels_last memory, so
decode and compute overlap. Every batch is appended to the cache as soon as
it is computed: an interrupted extraction keeps what it did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from heron.data.augment import SeededView  # re-exported: cached augmented copies use it
from heron.data.loader import ImageFiles, image_loader, plan_threads
from heron.transfer.cache import CacheDamaged, FeatureCache
from heron.transfer.engine import Engine, create_engine
from heron import _distributed as distributed

__all__ = ["Extraction", "FeatureBatches", "SeededView", "extract_features", "run_trunk"]

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Extraction:
    """Rows of each item per view (-1 where the image failed), errors, trunk forwards run."""

    rows: np.ndarray  # (N, V) int64
    views: list[str]
    errors: list[str] = field(default_factory=list)
    forwards: int = 0

    def ok(self) -> np.ndarray:
        """Mask of items whose every view was computed."""
        return (self.rows >= 0).all(axis=1)


def run_trunk(trunk: Engine, batch: torch.Tensor) -> torch.Tensor:
    """uint8 `(N, 3, H, W)` -> float32 features `(N, D)` on the CPU, through the extraction's engine."""
    return trunk(batch)


def extract_features(
    model: torch.nn.Module,
    paths: Sequence[Path],
    cache: FeatureCache,
    views: dict[str, Transform],
    min_size: int | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "features",
    precision: str = "fp32",
    engine: str = "torch",
    engine_dir: str | Path | None = None,
) -> Extraction:
    """Features of every path under every view, computing only what the cache lacks.

    `engine` and `precision` choose how the trunk runs (`heron.transfer.engine.
    resolve_engine`); a compiled engine is kept in `engine_dir`. `workers=None`
    takes the decode workers and trunk threads from `heron.data.loader.plan_threads`.
    """
    for attempt in range(2):
        result = _extract_once(model, paths, cache, views, min_size, batch_size, workers, device, progress, desc,
                               precision, engine, engine_dir)
        try:
            cache.verify(result.ok_keys())
            return result.extraction(cache)
        except CacheDamaged:
            if attempt:
                raise
            cache.clear()
            cache.rebuilt = True
    raise AssertionError("unreachable")


@dataclass
class _Pass:
    item_keys: list[list[str] | None]  # per item: one cache key per view (None: unreadable file)
    views: list[str]
    failed: set[int]
    errors: list[str]
    forwards: int

    def ok_keys(self) -> list[str]:
        return [k for i, keys in enumerate(self.item_keys) if i not in self.failed for k in keys]

    def extraction(self, cache: FeatureCache) -> Extraction:
        rows = np.full((len(self.item_keys), len(self.views)), -1, dtype=np.int64)
        for i, keys in enumerate(self.item_keys):
            if i not in self.failed:
                rows[i] = cache.rows(keys)
        return Extraction(rows, self.views, self.errors, self.forwards)


def _item_keys(paths, cache: FeatureCache, view_names: list[str], failed: set[int], errors: list[str]):
    """Cache keys of every path under every view; unreadable files are marked failed."""
    item_keys: list[list[str] | None] = []
    for i, path in enumerate(paths):
        try:
            digest = cache.file_keys([path])[0]
        except OSError as err:
            item_keys.append(None)
            failed.add(i)
            errors.append(f"{path}: cannot read ({err.strerror or err}); check that it exists and is readable")
            continue
        item_keys.append([f"{digest}|{view}" for view in view_names])
    cache.save_file_hashes()
    return item_keys


def _extract_once(model, paths, cache, views, min_size, batch_size, workers, device, progress, desc,
                  precision="fp32", engine="torch", engine_dir=None) -> _Pass:
    device = torch.device(device)
    view_names = list(views)
    failed: set[int] = set()
    errors: list[str] = []
    item_keys = _item_keys(paths, cache, view_names, failed, errors)
    unreadable: set[int] = set()
    forwards, trunk = 0, None
    for _ in range(3):  # a second round only when another process cleared the cache meanwhile
        cache.refresh()  # rows other processes have committed are done
        todo = [i for i, keys in enumerate(item_keys) if keys and i not in unreadable and cache.missing(keys)]
        if not todo:
            break
        plan = plan_threads(batches=-(-len(todo) // batch_size))  # decode workers and trunk threads
        if trunk is None:
            trunk = create_engine(model, engine, precision, device, cache_dir=engine_dir, threads=plan.threads)
        dataset = ImageFiles([(paths[i], i) for i in todo], [views[v] for v in view_names], min_size=min_size)
        loader = image_loader(dataset, batch_size=batch_size, workers=plan.workers if workers is None else workers)
        bar = tqdm(total=len(todo), desc=desc, unit="img", disable=not progress, leave=False)
        try:
            for x, item_ids, _, batch_errors in loader:
                unreadable.update(todo[pos] for pos, _ in batch_errors)
                errors.extend(message for _, message in batch_errors)
                bar.update(len(batch_errors))
                if x is None:
                    continue
                n, v = x.shape[:2]
                feats = run_trunk(trunk, x.flatten(0, 1)).view(n, v, -1)  # (n, V, D)
                forwards += n * v
                new = [(key, feat.numpy()) for item, per_view in zip(item_ids.tolist(), feats)
                       for key, feat in zip(item_keys[item], per_view) if key not in cache.index]
                if new:  # committed every batch (O(batch) on disk): a kill loses at most this one
                    cache.add([key for key, _ in new], np.stack([feat for _, feat in new]))
                bar.update(n)
        finally:  # Ctrl-C: keep what is finished, then let the KeyboardInterrupt go on
            cache.commit()
            bar.close()
    failed |= {i for i, keys in enumerate(item_keys) if keys and cache.missing(keys)}
    return _Pass(item_keys, view_names, failed, errors, forwards)


class FeatureBatches:
    """Mini-batches `(features float32 (B, D), targets)` gathered from the memory-mapped cache.

    Shuffling draws from torch's global generator (like a DataLoader), so a
    seeded run, and a resumed one, sees the same order. With several rows per
    item (cached augmented copies), each epoch picks one copy per item at random;
    targets `(N, copies, ...)` give each copy its own (a flipped image's boxes).
    Rows that fit in `preload_bytes` (as float32) are read once into memory, so a
    head that trains for a hundred short epochs does not gather them from the
    file a hundred times; a larger set streams from the memory map, batch by
    batch, and RAM stays flat however many images there are.

    With several processes (`rank`, `world`: the process group's by default)
    every rank yields its part of each global batch of `batch_size`, by the
    split rule of `heron._distributed.global_batches`; the order (and
    the copies picked) are drawn on every rank and rank 0's are broadcast, so
    the ranks agree even when their random states have drifted apart (each
    draws dropout masks for its own share). `len()` is the number of global
    batches, the same for any number of processes; `n` is the item count.
    """

    def __init__(
        self,
        features: np.ndarray,
        rows: np.ndarray,
        targets: torch.Tensor,
        batch_size: int = 64,
        shuffle: bool = False,
        preload_bytes: int = 128 << 20,
        rank: int | None = None,
        world: int | None = None,
        extra: torch.Tensor | None = None,
        per_copy: bool | None = None,
    ) -> None:
        self.features = features
        # targets (N, copies, ...) give each cached copy its own (and so does `extra`); default: 3-D targets
        self.per_copy = targets.ndim == 3 if per_copy is None else per_copy
        self.extra = extra  # (N, M) per-item columns (the metadata of --metadata): batches are ((x, extra), y)
        self.rows = rows if rows.ndim == 2 else rows[:, None]  # (N, copies)
        self.targets = targets
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.n = len(self.rows)
        self.rank = distributed.rank() if rank is None else rank
        self.world = distributed.world_size() if world is None else world
        width = features.shape[1] if features.ndim == 2 else 0
        self.table = None  # (N, copies, D) float32 when preloaded
        if self.rows.size * width * 4 <= preload_bytes:
            flat = np.asarray(features[self.rows.reshape(-1)], dtype=np.float32)
            self.table = torch.from_numpy(flat).view(*self.rows.shape, width)

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def _gather(self, idx: torch.Tensor, copy: torch.Tensor) -> torch.Tensor:
        if self.table is not None:
            return self.table[idx, copy]  # (B, D)
        rows = self.rows[idx.numpy(), copy.numpy()]
        return torch.from_numpy(np.asarray(self.features[rows], dtype=np.float32))  # (B, D)

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(order Tensor[N], copy picked per item Tensor[N]) for one pass; rank 0's when there are several."""
        n, copies = self.rows.shape
        order = torch.randperm(n) if self.shuffle else torch.arange(n)
        pick = torch.randint(copies, (n,)) if copies > 1 and self.shuffle else torch.zeros(n, dtype=torch.long)
        if self.world > 1 and self.shuffle:
            order, pick = distributed.broadcast_tensor(torch.stack([order, pick])).unbind(0)
        return order, pick

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, pick = self._draw()
        for idx in distributed.global_batches(order, self.batch_size, self.rank, self.world):
            x = self._gather(idx, pick[idx])
            if self.per_copy:
                y = self.targets[idx, pick[idx]]
                extra = None if self.extra is None else self.extra[idx, pick[idx]]
            else:
                y, extra = self.targets[idx], None if self.extra is None else self.extra[idx]
            yield (x if extra is None else (x, extra)), y
