"""Fast R-CNN: one trunk pass per image, every proposal RoI-pooled from the shared map, one head for all.

R-CNN runs the network once per proposal; Fast R-CNN runs the trunk once
per image and cuts each proposal out of its feature map with RoI max
pooling (`heron.ops.roi.roi_pool`) into a fixed `pool x pool` grid, which
two fully connected layers and the region predictor turn into class scores
and box deltas, trained jointly (`RegionLoss`). Here the trunk is frozen
(its maps come from the feature cache) and a 1x1 convolution first cuts
its channels to `width`, so the pooled regions stay small; that
convolution, the fully connected layers and the predictor train.
"""

from __future__ import annotations

import torch
from torch import nn

from heron.ops.roi import roi_pool
from heron.tasks.detect.region_head import RegionPredictor

__all__ = ["FastRCNNHead"]


class FastRCNNHead(nn.Module):
    """1x1 conv -> RoI max pool -> (fc -> ReLU -> dropout) x 2 -> class scores + per-class deltas.

    `forward((maps, regions))`: maps `(N, C, h, w)` or the cache's flat
    `(N, C*h*w)`, regions `(N, R, REGION_FIELDS)` whose first four columns
    are boxes in input pixels; returns `(N, R, 5 C + 1)`.
    """

    def __init__(self, map_shape: tuple[int, int, int], num_classes: int, input_size: tuple[int, int],
                 width: int = 256, pool: int = 7, hidden: int = 512, dropout: float = 0.25) -> None:
        super().__init__()
        self.map_shape, self.num_classes, self.input_size = tuple(map_shape), num_classes, tuple(input_size)
        self.pool = pool
        self.scale = map_shape[1] / input_size[0]  # map cells per input pixel (1/32 or 1/16)
        self.reduce = nn.Sequential(nn.Conv2d(map_shape[0], width, 1), nn.ReLU(inplace=True))
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(width * pool * pool, hidden), nn.ReLU(inplace=True),
                                nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                                nn.Dropout(dropout))
        self.predict = RegionPredictor(hidden, num_classes)

    def region_outputs(self, maps: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """`(sum of K_i, 5 C + 1)` for the boxes `(K_i, 4)` of each image, in order."""
        if maps.ndim == 2:
            maps = maps.view(-1, *self.map_shape)
        index = torch.cat([torch.full((len(b), 1), float(i), device=maps.device) for i, b in enumerate(boxes)])
        rois = torch.cat([index, torch.cat(boxes).to(maps.device).float()], 1)
        pooled = roi_pool(self.reduce(maps), rois, self.pool, self.scale)  # (K, width, pool, pool)
        return self.predict(self.fc(pooled))

    def forward(self, batch) -> torch.Tensor:
        maps, regions = batch
        n, r = regions.shape[:2]
        return self.region_outputs(maps, list(regions[..., :4])).view(n, r, -1)
