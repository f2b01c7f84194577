"""R-CNN: every proposal cropped, warped to a fixed size and run through the trunk on its own.

The seeds' first region-based detector: propose regions, then classify
each one as a small image. Each region (in input pixels) is cut out of the
squashed image and warped to `crop x crop` with bilinear sampling
(`torchvision.ops.roi_align` as a batched crop-and-resize), the frozen
trunk pools it to one feature vector, and a linear predictor gives its
class (or background) and per-class box deltas. The original trains SVMs
and a ridge box regressor on those features; here one softmax layer and the
deltas train jointly with Fast R-CNN's loss, which scores the same or
better and shares the rest of the pipeline. The training regions of an
image are fixed, so their features are computed once into the feature
cache; at test time every proposal needs its own trunk pass: the slowness
Fast R-CNN removes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from heron.tasks.detect.region_head import RegionPredictor

__all__ = ["RCNNHead", "warp_regions", "region_features", "cached_region_features"]


class RCNNHead(nn.Module):
    """Dropout -> class scores + per-class deltas on a region's pooled trunk features `(B, D)`."""

    def __init__(self, features: int, num_classes: int, dropout: float = 0.25) -> None:
        super().__init__()
        self.features, self.num_classes = features, num_classes
        self.drop = nn.Dropout(dropout)
        self.predict = RegionPredictor(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(self.drop(x))


def warp_regions(image: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 `(K, 3, size, size)`: each box `(K, 4)` (input pixels) of `image uint8 (3, H, W)` warped square."""
    from torchvision.ops import roi_align

    if not len(boxes):
        return torch.zeros(0, 3, size, size, dtype=torch.uint8)
    rois = torch.cat([torch.zeros(len(boxes), 1), boxes.float()], 1)
    out = roi_align(image[None].float(), rois, (size, size), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def region_features(trunk, image: torch.Tensor, boxes: torch.Tensor, size: int, batch_size: int = 64) -> torch.Tensor:
    """Pooled trunk features `(K, D)` of the warped boxes of one image; `trunk` maps uint8 batches to `(B, D)`."""
    crops = warp_regions(image, boxes, size)
    parts = [trunk(crops[s : s + batch_size]) for s in range(0, len(crops), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, 0)


def _region_keys(digest: str, boxes: torch.Tensor) -> list[str]:
    return [f"{digest}|region:" + ",".join(f"{v:.1f}" for v in box) for box in boxes.tolist()]


def cached_region_features(model, pre, arch: str, crop: int, paths: list[Path], regions: list[torch.Tensor], *,
                           cache_dir=None, device="cpu", engine: str = "torch", precision: str = "fp32",
                           quiet: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
    """(the cache's memory map, per image the cache rows of its regions' features).

    `model`: a pooled `ClassifierModel` around the trunk; `regions[i]`
    `(R_i, 4)` boxes in input pixels of image `paths[i]`. Only regions the
    cache lacks are cropped and run.
    """
    from tqdm.auto import tqdm

    from heron.data.loader import file_loader
    from heron.models._weights import cache_dir as default_cache
    from heron.transfer.cache import FeatureCache, weights_fingerprint
    from heron.transfer.engine import create_engine
    from heron.transfer.maps import squash_transform

    key = {"arch": arch, "weights": weights_fingerprint(model.backbone), "kind": "pooled", "view": "region-warp",
           "crop": crop, "input": list(pre.size), "interpolation": pre.interpolation, "precision": precision,
           "engine": engine}
    cache = FeatureCache(Path(cache_dir) if cache_dir else default_cache() / "features", key)
    keys = [_region_keys(d, r) for d, r in zip(cache.file_keys(list(paths)), regions)]
    cache.save_file_hashes()
    todo = [i for i, k in enumerate(keys) if cache.missing(k)]
    if todo:
        trunk = create_engine(model, engine, precision, device, cache_dir=cache.dir / "engines")
        _, loader, _ = file_loader([paths[i] for i in todo], squash_transform(pre), 8, 0)
        bar = tqdm(total=len(todo), desc="region features", unit="img", disable=quiet, leave=False)
        try:
            for x, _, idx, errors in loader:
                if errors:
                    raise OSError(errors[0][1])
                for image, j in zip(x, idx.tolist()):
                    item = todo[j]
                    feats = region_features(trunk, image, regions[item], crop)
                    cache.add(keys[item], feats.numpy().astype(np.float32))
                    bar.update(1)
        finally:
            cache.commit()
            bar.close()
    return cache.array(), [cache.rows(k) for k in keys]
