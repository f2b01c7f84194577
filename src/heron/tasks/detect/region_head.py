"""What R-CNN and Fast R-CNN share: a region's class and box deltas, their loss, and the final detections.

For every region the predictor gives C + 1 class scores (0 is background)
and, per object class, the four R-CNN deltas (dx, dy, dw, dh) that move the
region onto the object (`heron.ops.boxes.encode_deltas`). The loss is Fast
R-CNN's multi-task loss: the cross-entropy of the class over the sampled
regions plus `box_weight` times the smooth-L1 error of the true class's
deltas over the object regions, both divided by the number of regions.
At test time every region gives a box per class, scored by that class's
probability; class-wise NMS keeps the best.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from heron.ops.boxes import batched_nms, clip_boxes, decode_deltas
from heron.tasks.detect.postprocess import Detection

__all__ = ["RegionPredictor", "RegionLoss", "region_detections"]


class RegionPredictor(nn.Module):
    """Linear class scores `(..., C + 1)` and per-class deltas `(..., 4 C)`, concatenated: `(..., 5 C + 1)`."""

    def __init__(self, features: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.cls = nn.Linear(features, num_classes + 1)
        self.box = nn.Linear(features, 4 * num_classes)
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.normal_(self.box.weight, std=0.001)  # small deltas first: the proposal's own box
        nn.init.zeros_(self.cls.bias)
        nn.init.zeros_(self.box.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.cls(x), self.box(x)], -1)


class RegionLoss(nn.Module):
    """Fast R-CNN's multi-task loss on predictions `(..., 5 C + 1)` and sampled regions `(..., REGION_FIELDS)`."""

    def __init__(self, num_classes: int, box_weight: float = 1.0) -> None:
        super().__init__()
        self.num_classes, self.box_weight = num_classes, box_weight
        self.last: dict[str, float] = {}

    def forward(self, pred: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        c = self.num_classes
        pred = pred.float().reshape(-1, 5 * c + 1)
        regions = regions.float().reshape(-1, regions.shape[-1])
        used = regions[:, 9] > 0
        pred, regions = pred[used], regions[used]
        n = max(len(regions), 1)
        labels = regions[:, 4].long()
        cls = F.cross_entropy(pred[:, : c + 1], labels, reduction="sum") / n
        fg = labels > 0
        deltas = pred[fg, c + 1 :].view(-1, c, 4)[torch.arange(int(fg.sum())), labels[fg] - 1]  # the true class's
        box = F.smooth_l1_loss(deltas, regions[fg, 5:9], beta=1.0, reduction="sum") / n
        self.last = {"class": float(cls.detach()), "box": float(box.detach())}
        return cls + self.box_weight * box


def region_detections(pred: torch.Tensor, proposals: torch.Tensor, input_size: tuple[int, int],
                      score_threshold: float, iou_threshold: float, max_detections: int = 100) -> Detection:
    """One image's detections in input pixels from `pred (P, 5 C + 1)` on its `proposals (P, 4)`.

    Each (region, class) pair is a candidate box (the region moved by that
    class's deltas, clipped to the image) scored by the class's softmax
    probability; those above `score_threshold` go through class-wise NMS.
    """
    pred = pred.float()
    c = (pred.shape[1] - 1) // 5
    probs = torch.softmax(pred[:, : c + 1], 1)[:, 1:]  # (P, C), background left out
    keep = (probs > score_threshold).nonzero()  # (K, 2) region, class: only these boxes are decoded
    deltas = pred[:, c + 1 :].view(-1, c, 4)[keep[:, 0], keep[:, 1]]
    chosen = clip_boxes(decode_deltas(deltas, proposals.float()[keep[:, 0]]), input_size)
    scores = probs[keep[:, 0], keep[:, 1]]
    real = (chosen[:, 2:] > chosen[:, :2]).all(1)
    chosen, scores, labels = chosen[real], scores[real], keep[real, 1]
    kept = batched_nms(chosen, scores, labels, iou_threshold)[:max_detections]
    return Detection(chosen[kept], scores[kept], labels[kept])
