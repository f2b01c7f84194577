"""From the detector's decoded grid to a short list of boxes: score threshold, top-k, class-wise NMS."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from heron.ops.boxes import batched_nms

__all__ = ["Detection", "select_detections"]


@dataclass
class Detection:
    """One image's detections: `boxes Tensor[K, 4]` xyxy, `scores Tensor[K]`, `labels Tensor[K]` int64."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    def scaled(self, sx: float, sy: float) -> "Detection":
        """The same detections with x scaled by `sx` and y by `sy` (input pixels -> the original image's)."""
        factor = self.boxes.new_tensor([sx, sy, sx, sy])
        return Detection(self.boxes * factor, self.scores, self.labels)

    def as_dict(self) -> dict:
        return {"boxes": self.boxes, "scores": self.scores, "labels": self.labels}


def select_detections(boxes: torch.Tensor, objectness: torch.Tensor, probs: torch.Tensor, score_threshold: float,
                      iou_threshold: float, max_detections: int = 100, pre_nms: int = 2000) -> Detection:
    """The detections of one image from `boxes Tensor[P, 4]`, `objectness Tensor[P]`, `probs Tensor[P, C]`.

    A candidate is a (box, class) pair scored p_c * P(class); those above
    `score_threshold` (the `pre_nms` best at most) go through non-max
    suppression class by class, and the `max_detections` best survivors are
    kept. A box may be a candidate for two classes: the scores decide.
    """
    scores = objectness[:, None] * probs  # (P, C)
    keep = (scores > score_threshold).nonzero()  # (K, 2): box index, class
    values = scores[keep[:, 0], keep[:, 1]]
    if len(values) > pre_nms:
        top = values.topk(pre_nms).indices
        keep, values = keep[top], values[top]
    chosen = boxes[keep[:, 0]]
    kept = batched_nms(chosen, values, keep[:, 1], iou_threshold)[:max_detections]
    return Detection(chosen[kept], values[kept], keep[kept, 1])
