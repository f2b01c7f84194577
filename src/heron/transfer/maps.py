"""The trunk's feature maps of whole images, computed once and kept in the feature cache.

Localisation, landmarks and detection train a head on where things are, so
they take the whole image resized to the network's input (the "squash" view:
aspect ratio not kept, nothing cropped), and keep the full map
`(C, h, w)` per image rather than a pooled vector. A position on the map
is then the same fraction of the original image, whatever its size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from heron.data.transforms import Preprocessing, resize
from heron.transfer.cache import FeatureCache, weights_fingerprint
from heron.transfer.extract import extract_features

__all__ = ["squash_transform", "cached_maps", "map_cache"]


def squash_transform(pre: Preprocessing):
    """Resize the whole image to the network's size (aspect ratio not kept): boxes as fractions stay valid."""
    def transform(img: torch.Tensor) -> torch.Tensor:
        return resize(img, pre.size, pre.interpolation)

    return transform


def map_cache(model, pre: Preprocessing, arch: str, cache_dir: str | Path | None, engine: str,
              precision: str) -> FeatureCache:
    """The cache of `model.backbone`'s squashed maps (its key: trunk, weights, preprocessing, engine)."""
    from heron.models._weights import cache_dir as default_cache

    key = {"arch": arch, "weights": weights_fingerprint(model.backbone), "preprocessing": pre.to_dict(),
           "kind": "map", "view": "squash", "precision": precision, "engine": engine}
    return FeatureCache(Path(cache_dir) if cache_dir else default_cache() / "features", key)


def cached_maps(model, pre: Preprocessing, arch: str, split_paths: dict[str, list[Path]], *,
                cache_dir: str | Path | None = None, workers: int | None = None, device="cpu",
                engine: str = "torch", precision: str = "fp32", quiet: bool = False
                ) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """(the cache's memory map `(rows, C*h*w)`, cache rows `(N, 1)` per split, -1 where unreadable, errors).

    `model` is a `ClassifierModel` with `feature_kind="map"`: its trunk runs
    once per image that the cache lacks.
    """
    cache = map_cache(model, pre, arch, cache_dir, engine, precision)
    rows, errors = {}, []
    for split, paths in split_paths.items():
        ext = extract_features(model, paths, cache, {"squash": squash_transform(pre)}, batch_size=64,
                               workers=workers, device=device, progress=not quiet, desc=f"{split} features",
                               precision=precision, engine=engine, engine_dir=cache.dir / "engines")
        rows[split] = ext.rows
        errors += ext.errors
    return cache.array(), rows, errors
