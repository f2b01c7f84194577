"""Faster R-CNN on the trunk's cached map: torchvision's region proposal network and RoI heads as one head.

The two-stage recipe of Ren et al. (2015), trained on the same cached maps
as the YOLO head:

- A 1x1 convolution (+ReLU) cuts the trunk's channels (1280 for Lite0) to
  `width`; it trains, the trunk stays frozen.
- The region proposal network slides a 3x3 convolution over that map and,
  at every cell, scores 9 anchors (3 sizes x 3 aspect ratios, the paper's)
  as object or not and regresses each to a box; the best `rpn_pre_nms` per
  image go through NMS at 0.7 and `rpn_post_nms` remain as proposals.
- The RoI heads pool each proposal to 7x7 (RoIAlign), run two
  fully connected layers and predict num_classes + 1 scores (torchvision's
  background is class 0) and a box refinement per class.

Anchor sizes default to (1/8, 1/4, 1/2) of the input's shorter side (52,
104 and 208 px at 416): the paper's 128, 256 and 512 px on 600-px images are
about (1/5, 2/5, 4/5), one octave larger, but cached maps are at a small
input size, where objects of 30-60 px are common and the largest boxes are
reached by the regression from the 1/2 anchor (a 2:1 anchor at 1/2 is already
300 px wide at 416).

Truth travels as one fixed-size tensor per batch (`pack_truth`): rows of
(x1, y1, x2, y2, label) in input pixels, padded with label -1, so it goes
through `FeatureBatches` like any target. `forward` returns the four parts
of torchvision's training loss (also in eval mode, so heron's Learner can
validate), `faster_rcnn_loss` sums them, and `detect` returns the boxes.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import AnchorGenerator, RegionProposalNetwork, RPNHead
from torchvision.ops import MultiScaleRoIAlign

__all__ = ["FasterRCNNHead", "faster_rcnn_loss", "pack_truth", "unpack_truth", "default_anchor_sizes", "LOSS_PARTS"]

LOSS_PARTS = ("rpn_objectness", "rpn_box", "classifier", "box_regression")  # the columns of `forward`'s output
_TORCHVISION_LOSSES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")
_ANCHOR_FRACTIONS = (1 / 8, 1 / 4, 1 / 2)  # of the input's shorter side; see the module docstring
_POOL = 7  # RoIAlign output side, as in the paper (VGG's fc6 input)
_ROIS_PER_IMAGE = 64  # proposals sampled per image for the RoI heads' loss: the Fast R-CNN paper's (torchvision's
# 512 costs 8x the fully connected layers' time, for little gain with a few objects per image)
_RPN_NMS = 0.7  # IoU at which the proposal network's NMS merges proposals (the paper's)


def default_anchor_sizes(input_size: tuple[int, int]) -> tuple[float, ...]:
    """The three anchor sizes (square side in pixels) for an input of (H, W): its shorter side x (1/8, 1/4, 1/2)."""
    side = min(input_size)
    return tuple(side * f for f in _ANCHOR_FRACTIONS)


def pack_truth(boxes: torch.Tensor, labels: torch.Tensor, max_boxes: int) -> torch.Tensor:
    """`Tensor[max_boxes, 5]`: rows (x1, y1, x2, y2, label), padded with zeros and label -1.

    Boxes beyond `max_boxes` are dropped. A fixed size lets an image's truth
    travel through `FeatureBatches` with its map.
    """
    boxes, labels = boxes.float().reshape(-1, 4)[:max_boxes], labels.reshape(-1)[:max_boxes]
    packed = torch.zeros(max_boxes, 5)
    packed[:, 4] = -1.0
    packed[: len(boxes), :4] = boxes
    packed[: len(boxes), 4] = labels.float()
    return packed


def unpack_truth(truth: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image (boxes float `(n, 4)`, labels int64 `(n,)`) from `Tensor[N, M, 5]` (or flat `(N, M*5)`); padding dropped."""
    truth = truth.reshape(len(truth), -1, 5)
    out = []
    for rows in truth:
        real = rows[rows[:, 4] >= 0]
        out.append((real[:, :4].float(), real[:, 4].round().long()))
    return out


class FasterRCNNHead(nn.Module):
    """Region proposal network + RoI heads (torchvision's) on the trunk's cached map.

    `map_shape` = (C, h, w) of the trunk's map at the training input size,
    `input_size` = (H, W) in pixels (the stride is H / h). Maps arrive as
    `(N, C, h, w)` or the cache's flattened `(N, C*h*w)`. `anchor_sizes`
    (three, in pixels) default to `default_anchor_sizes(input_size)`; each is
    combined with every one of `aspect_ratios` (height / width).
    `score_threshold`, `iou_threshold` (class-wise NMS) and `max_detections`
    set what `detect` keeps; the caller filters further by its own threshold.
    `representation` is the width of the RoI heads' two fully connected
    layers (torchvision's 1024; they hold most of the head's weights and
    time, so small problems can use fewer).
    """

    def __init__(self, map_shape: tuple[int, int, int], num_classes: int, input_size: tuple[int, int],
                 anchor_sizes: tuple[float, ...] | None = None, aspect_ratios=(0.5, 1.0, 2.0), width: int = 256,
                 rpn_pre_nms: int = 1000, rpn_post_nms: int = 300, score_threshold: float = 0.001,
                 iou_threshold: float = 0.45, max_detections: int = 100, representation: int = 1024) -> None:
        super().__init__()
        self.map_shape, self.num_classes = tuple(map_shape), num_classes
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.anchor_sizes = tuple(float(s) for s in (anchor_sizes or default_anchor_sizes(self.input_size)))
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)
        self.reduce = nn.Sequential(nn.Conv2d(self.map_shape[0], width, 1), nn.ReLU(inplace=True))
        self.rpn = self._proposal_network(width, rpn_pre_nms, rpn_post_nms)
        self.roi_heads = self._roi_heads(width, representation, score_threshold, iou_threshold, max_detections)
        self.last: dict[str, float] = {}  # the parts of the last batch's loss, for logging

    def _proposal_network(self, width: int, pre_nms: int, post_nms: int) -> RegionProposalNetwork:
        """Torchvision's RPN with the paper's matching (IoU 0.7 / 0.3, 256 anchors per image, half positive)."""
        anchors = AnchorGenerator(sizes=(self.anchor_sizes,), aspect_ratios=(self.aspect_ratios,))
        head = RPNHead(width, anchors.num_anchors_per_location()[0])
        return RegionProposalNetwork(
            anchors, head, fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
            pre_nms_top_n={"training": pre_nms, "testing": pre_nms},
            post_nms_top_n={"training": post_nms, "testing": post_nms}, nms_thresh=_RPN_NMS)

    def _roi_heads(self, width: int, representation: int, score_threshold: float, iou_threshold: float,
                   max_detections: int) -> RoIHeads:
        """RoIAlign 7x7 on the one map ("0"), two fully connected layers, num_classes + 1 scores and boxes."""
        pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=_POOL, sampling_ratio=2)
        box_head = TwoMLPHead(width * _POOL * _POOL, representation)
        predictor = FastRCNNPredictor(representation, self.num_classes + 1)
        return RoIHeads(pool, box_head, predictor, fg_iou_thresh=0.5, bg_iou_thresh=0.5,
                        batch_size_per_image=_ROIS_PER_IMAGE, positive_fraction=0.25, bbox_reg_weights=None,
                        score_thresh=score_threshold, nms_thresh=iou_threshold, detections_per_img=max_detections)

    def _features(self, maps: torch.Tensor) -> tuple[dict[str, torch.Tensor], ImageList]:
        """The reduced map as torchvision's one-level feature dict, and an ImageList that only carries sizes."""
        if maps.ndim == 2:
            maps = maps.view(-1, *self.map_shape)
        n = maps.shape[0]
        height, width = self.input_size
        images = maps.new_zeros(1, 1, 1, 1).expand(n, 3, height, width)  # the shape is all torchvision reads
        return {"0": self.reduce(maps)}, ImageList(images, [self.input_size] * n)

    def _targets(self, truth: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Torchvision's targets: boxes with area, labels shifted to 1..num_classes (0 is background)."""
        targets = []
        for boxes, labels in unpack_truth(truth):
            keep = (boxes[:, 2:] > boxes[:, :2]).all(1)
            targets.append({"boxes": boxes[keep], "labels": labels[keep] + 1})
        return targets

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """`Tensor[N, 4]`: the batch's four loss parts (`LOSS_PARTS`), the same on every row.

        `batch` = (maps, truth). The losses are torchvision's training losses,
        computed in eval mode too (validation): the proposal network and RoI
        heads switch to training mode for the call (they hold no batch norm or
        dropout, so that changes only which proposals are sampled), and in
        eval mode the sampling draws from a forked random state, so validating
        leaves the training draws where they were.
        """
        maps, truth = batch
        features, images = self._features(maps)
        targets = self._targets(truth.to(maps.device))
        with self._loss_mode():
            proposals, rpn_losses = self.rpn(images, features, targets)
            _, roi_losses = self.roi_heads(features, proposals, images.image_sizes, targets)
        losses = {**rpn_losses, **roi_losses}
        parts = torch.stack([losses[name].float() for name in _TORCHVISION_LOSSES])  # (4,)
        self.last = dict(zip(LOSS_PARTS, parts.detach().tolist()))
        return parts.unsqueeze(0).expand(len(images.image_sizes), -1)

    @contextlib.contextmanager
    def _loss_mode(self):
        """RPN and RoI heads in training mode; in eval mode also a forked random state. Modes restored after."""
        was = self.rpn.training, self.roi_heads.training
        devices = [self.reduce[0].weight.device] if self.reduce[0].weight.is_cuda else []
        fork = contextlib.nullcontext() if self.training else torch.random.fork_rng(devices=devices)
        try:
            with fork:
                self.rpn.train()
                self.roi_heads.train()
                yield
        finally:
            self.rpn.train(was[0])
            self.roi_heads.train(was[1])

    @torch.no_grad()
    def detect(self, maps: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(boxes (K,4) xyxy in input pixels, scores (K,), labels (K,) int64 in 0..num_classes-1) per image.

        Eval mode throughout (the module's mode is restored after): up to
        `rpn_post_nms` proposals per image, then the RoI heads' scores and
        boxes, clipped to the input, kept above `score_threshold`, class-wise
        NMS at `iou_threshold`, at most `max_detections` per image.
        """
        was = self.training
        self.eval()
        try:
            features, images = self._features(maps)
            proposals, _ = self.rpn(images, features)
            results, _ = self.roi_heads(features, proposals, images.image_sizes)
        finally:
            self.train(was)
        return [(r["boxes"], r["scores"], r["labels"] - 1) for r in results]


def faster_rcnn_loss(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The scalar training loss: the sum of `FasterRCNNHead.forward`'s four parts (`truth` is already in them)."""
    return pred[0].sum()
