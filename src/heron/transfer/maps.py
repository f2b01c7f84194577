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

__all__ = ["squash_transform", "map_trunk", "cached_maps", "map_cache"]


def squash_transform(pre: Preprocessing):
    """Resize the whole image to the network's size (aspect ratio not kept): boxes as fractions stay valid."""
    def transform(img: torch.Tensor) -> torch.Tensor:
        return resize(img, pre.size, pre.interpolation)

    return transform


def map_trunk(arch: str, weights: str | None, size, dilate: bool = False):
    """(trunk without its top, squash preprocessing at `size`, map shape `(C, h, w)`) for a whole-image head.

    `dilate`: the trunk's last stage no longer downsamples (`dilate_last_stride`): a map twice as fine.
    """
    from heron.models import build

    backbone = build(arch, weights=weights, include_top=False)
    pre = Preprocessing.from_spec(getattr(backbone, "pretrained_cfg", None), size, crop_pct=1.0)
    if dilate:
        from heron.transfer.dilate import dilate_last_stride

        dilate_last_stride(backbone)
    with torch.no_grad():
        fmap = backbone.eval().forward_features(torch.zeros(1, 3, *pre.size))  # (1, C, h, w)
    return backbone, pre, tuple(fmap.shape[1:])


def map_cache(model, pre: Preprocessing, arch: str, cache_dir: str | Path | None, engine: str,
              precision: str, variant: str = "") -> FeatureCache:
    """The cache of `model.backbone`'s squashed maps (its key: trunk, weights, preprocessing, engine).

    `variant` names a change to the trunk its weights do not show (a dilated last stage).
    """
    from heron.models._weights import cache_dir as default_cache

    key = {"arch": arch, "weights": weights_fingerprint(model.backbone), "preprocessing": pre.to_dict(),
           "kind": "map", "view": "squash", "precision": precision, "engine": engine}
    if variant:
        key["variant"] = variant
    return FeatureCache(Path(cache_dir) if cache_dir else default_cache() / "features", key)


def _flipped(transform):
    def flip(img: torch.Tensor) -> torch.Tensor:
        return transform(img).flip(-1)

    return flip


def cached_maps(model, pre: Preprocessing, arch: str, split_paths: dict[str, list[Path]], *,
                cache_dir: str | Path | None = None, workers: int | None = None, device="cpu",
                engine: str = "torch", precision: str = "fp32", quiet: bool = False, flipped: tuple[str, ...] = (),
                variant: str = "") -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """(the cache's memory map `(rows, C*h*w)`, cache rows `(N, V)` per split, -1 where unreadable, errors).

    `model` is a `ClassifierModel` with `feature_kind="map"`: its trunk runs
    once per image and view that the cache lacks. The splits named in
    `flipped` also get the mirrored image's map (view 1), an augmented copy
    whose boxes are known exactly.
    """
    cache = map_cache(model, pre, arch, cache_dir, engine, precision, variant)
    rows, errors = {}, []
    for split, paths in split_paths.items():
        views = {"squash": squash_transform(pre)}
        if split in flipped:
            views["squash-flip"] = _flipped(views["squash"])
        ext = extract_features(model, paths, cache, views, batch_size=64,
                               workers=workers, device=device, progress=not quiet, desc=f"{split} features",
                               precision=precision, engine=engine, engine_dir=cache.dir / "engines")
        rows[split] = ext.rows
        errors += ext.errors
    return cache.array(), rows, errors
