"""The YOLO-style detector: a grid of cells, anchor shapes, and one convolutional output per cell and anchor.

The seeds' recipe, with YOLOv2's parameterisation:

- The trunk's last feature map is an S_h x S_w grid over the image (stride
  32: 13 x 13 at 416 px). The head predicts, for every cell and each of A
  anchor shapes, 5 + C numbers: t_x, t_y, t_w, t_h, the objectness p_c, and
  C class scores, i.e. an output of S x S x A x (5 + C).
- Decoding: the box centre is (cell + sigmoid(t_x, t_y)) * stride, so it
  stays in its cell; its size is the anchor's times exp(t_w, t_h);
  p_c = sigmoid(objectness); the class probabilities are a softmax; a box's
  score for class c is p_c * P(c).
- Targets (`encode_targets`): each true box goes to the cell that holds its
  midpoint and to the anchor whose shape has the highest IoU with it; that
  cell and anchor learn the box, the objectness 1 and the class.
- Loss (`YoloLoss`), summed over cells and averaged over images:
  `box_weight * box + objectness + class`, where box is the squared error
  of the centre offsets (after the sigmoid) plus that of the log sizes,
  each positive weighted by 2 - w*h/(W*H) (small boxes count more:
  their IoU suffers more from the same error); objectness is a binary
  cross-entropy, target 1 at the positives and 0 elsewhere, with the
  negatives weighted by `noobj_weight` and those whose predicted box already
  overlaps a true one by more than `ignore_iou` left out (they are not wrong,
  only not the chosen anchor); class is the cross-entropy at the positives.
  Defaults box 5, no-object 0.5: the weights YOLO v1 chose (lambda_coord and
  lambda_noobj), because most cells hold no object and would otherwise
  swamp the few that do.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from heron.ops.anchors import shape_iou
from heron.ops.boxes import box_iou

__all__ = ["YoloHead", "YoloLoss", "encode_targets", "pack_targets", "decode", "TARGET_FIELDS"]

TARGET_FIELDS = 6  # per cell and anchor: t_x, t_y, t_w, t_h, objectness, class id
_OBJ_PRIOR = 0.01  # the objectness a cell starts from: most cells hold nothing


class YoloHead(nn.Module):
    """conv1x1 -> (conv3x3 -> BN -> LeakyReLU) x 2 -> conv1x1 to A * (5 + C) channels, on the trunk's map.

    The first 1x1 convolution cuts the trunk's channels (1280 for Lite0) to
    `width` before the 3x3 ones see the neighbourhood: 3.5x fewer
    multiply-adds than a 3x3 convolution on the trunk's channels.

    Takes the map `(N, C, h, w)` or the cache's flattened form `(N, C*h*w)`
    (`map_shape` = (C, h, w) at the training size); returns the raw output
    `(N, A * (5 + C), h, w)`.
    """

    def __init__(self, map_shape: tuple[int, int, int], num_anchors: int, num_classes: int, width: int = 256) -> None:
        super().__init__()
        self.map_shape, self.num_anchors, self.num_classes = tuple(map_shape), num_anchors, num_classes
        channels = self.map_shape[0]
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.LeakyReLU(0.1)]
        for _ in range(2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.LeakyReLU(0.1)]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(width, num_anchors * (5 + num_classes), 1)
        with torch.no_grad():  # start every cell at objectness 0.01, so the empty cells' loss starts small
            bias = self.out.bias.view(num_anchors, 5 + num_classes)
            bias.zero_()
            bias[:, 4] = math.log(_OBJ_PRIOR / (1 - _OBJ_PRIOR))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.view(-1, *self.map_shape)
        return self.out(self.body(x))  # (N, A*(5+C), h, w)


def _cells(out: torch.Tensor, num_anchors: int) -> torch.Tensor:
    """`(N, A*(5+C), h, w)` -> `(N, h, w, A, 5+C)`: the seeds' S x S x A x (5 + C) volume."""
    n, _, h, w = out.shape
    return out.view(n, num_anchors, -1, h, w).permute(0, 3, 4, 1, 2)


def _strides(grid: tuple[int, int], input_size: tuple[int, int]) -> tuple[float, float]:
    """(stride_y, stride_x) in input pixels per cell."""
    return input_size[0] / grid[0], input_size[1] / grid[1]


def encode_targets(boxes: torch.Tensor, labels: torch.Tensor, anchors: torch.Tensor, grid: tuple[int, int],
                   input_size: tuple[int, int]) -> torch.Tensor:
    """Targets `Tensor[h, w, A, 6]` (t_x, t_y, t_w, t_h, objectness, class) for one image.

    `boxes Tensor[n, 4]` xyxy in input pixels, `labels Tensor[n]`, `anchors
    Tensor[A, 2]` (width, height) in input pixels. t_x, t_y are the centre's
    offsets in its cell (0..1), t_w, t_h the log of the size over the
    anchor's. Boxes without area are left out; when two boxes claim the same
    cell and anchor, the larger one keeps it.
    """
    h, w = grid
    stride_y, stride_x = _strides(grid, input_size)
    target = torch.zeros(h, w, len(anchors), TARGET_FIELDS)
    boxes = boxes.float().reshape(-1, 4)
    wh = boxes[:, 2:] - boxes[:, :2]  # (n, 2)
    keep = (wh > 0).all(1)
    boxes, wh, labels = boxes[keep], wh[keep], labels.reshape(-1)[keep]
    if not len(boxes):
        return target
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # (n, 2) x, y
    col = (centre[:, 0] / stride_x).floor().clamp(0, w - 1)
    row = (centre[:, 1] / stride_y).floor().clamp(0, h - 1)
    best = shape_iou(wh, anchors.float()).argmax(1)  # (n,)
    order = (wh[:, 0] * wh[:, 1]).argsort()  # small first: a larger box written later wins a shared slot
    for i in order.tolist():
        a, r, c = int(best[i]), int(row[i]), int(col[i])
        target[r, c, a, 0] = centre[i, 0] / stride_x - c
        target[r, c, a, 1] = centre[i, 1] / stride_y - r
        target[r, c, a, 2:4] = torch.log(wh[i] / anchors[a].float())
        target[r, c, a, 4] = 1.0
        target[r, c, a, 5] = float(labels[i])
    return target


def pack_targets(dense: torch.Tensor, boxes: torch.Tensor, max_boxes: int) -> torch.Tensor:
    """One flat row per image: the dense targets, then `max_boxes` true boxes (xyxy, padded with zeros).

    A fixed width lets the targets travel through `FeatureBatches` like any label.
    """
    padded = torch.zeros(max_boxes, 4)
    boxes = boxes.float().reshape(-1, 4)[:max_boxes]
    padded[: len(boxes)] = boxes
    return torch.cat([dense.reshape(-1), padded.reshape(-1)])


def decode(out: torch.Tensor, anchors: torch.Tensor, input_size: tuple[int, int]
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw head output `(N, A*(5+C), h, w)` -> boxes `(N, P, 4)` xyxy in input pixels, objectness `(N, P)`
    and class probabilities `(N, P, C)`, with P = h * w * A in (row, column, anchor) order."""
    cells = _cells(out.float(), len(anchors))  # (N, h, w, A, 5+C)
    n, h, w, a, _ = cells.shape
    stride_y, stride_x = _strides((h, w), input_size)
    rows = torch.arange(h, device=out.device, dtype=torch.float32).view(1, h, 1, 1)
    cols = torch.arange(w, device=out.device, dtype=torch.float32).view(1, 1, w, 1)
    cx = (torch.sigmoid(cells[..., 0]) + cols) * stride_x  # (N, h, w, A)
    cy = (torch.sigmoid(cells[..., 1]) + rows) * stride_y
    size = anchors.to(out.device).float().view(1, 1, 1, a, 2) * torch.exp(cells[..., 2:4].clamp(max=10.0))
    half = size / 2  # (N, h, w, A, 2)
    boxes = torch.stack([cx - half[..., 0], cy - half[..., 1], cx + half[..., 0], cy + half[..., 1]], -1)
    objectness = torch.sigmoid(cells[..., 4])
    probs = torch.softmax(cells[..., 5:], -1)
    return boxes.reshape(n, -1, 4), objectness.reshape(n, -1), probs.reshape(n, h * w * a, -1)


class YoloLoss(nn.Module):
    """`box_weight * box + objectness + class` on packed targets (see the module docstring)."""

    def __init__(self, anchors: torch.Tensor, num_classes: int, grid: tuple[int, int], input_size: tuple[int, int],
                 max_boxes: int, box_weight: float = 5.0, noobj_weight: float = 0.5, ignore_iou: float = 0.6) -> None:
        super().__init__()
        self.register_buffer("anchors", anchors.float())
        self.num_classes, self.grid, self.input_size, self.max_boxes = num_classes, tuple(grid), tuple(input_size), max_boxes
        self.box_weight, self.noobj_weight, self.ignore_iou = box_weight, noobj_weight, ignore_iou
        self.last: dict[str, float] = {}  # the parts of the last batch's loss, for logging

    def unpack(self, packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Packed rows `(N, D)` -> dense targets `(N, h, w, A, 6)` and true boxes `(N, max_boxes, 4)`."""
        h, w = self.grid
        dense_width = h * w * len(self.anchors) * TARGET_FIELDS
        dense = packed[:, :dense_width].reshape(-1, h, w, len(self.anchors), TARGET_FIELDS)
        return dense, packed[:, dense_width:].reshape(-1, self.max_boxes, 4)

    def _ignored(self, out: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        """`(N, h, w, A)` True where a predicted box overlaps some true box by more than `ignore_iou`."""
        with torch.no_grad():
            boxes, _, _ = decode(out, self.anchors, self.input_size)  # (N, P, 4)
            ignored = torch.zeros(boxes.shape[:2], dtype=torch.bool, device=out.device)
            for i in range(len(boxes)):
                real = truth[i][(truth[i, :, 2:] > truth[i, :, :2]).all(1)]
                if len(real):
                    ignored[i] = box_iou(boxes[i], real).max(1).values > self.ignore_iou
        n = out.shape[0]
        return ignored.view(n, *self.grid, len(self.anchors))

    def forward(self, out: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        out = out.float()
        dense, truth = self.unpack(packed.float())
        cells = _cells(out, len(self.anchors))  # (N, h, w, A, 5+C)
        positive = dense[..., 4] > 0.5
        negative = ~positive & ~self._ignored(out, truth)
        bce = nn.functional.binary_cross_entropy_with_logits
        n = out.shape[0]
        obj = (bce(cells[..., 4][positive], torch.ones_like(cells[..., 4][positive]), reduction="sum")
               + self.noobj_weight * bce(cells[..., 4][negative], torch.zeros_like(cells[..., 4][negative]),
                                         reduction="sum")) / n
        pred, want = cells[positive], dense[positive]  # (K, 5+C), (K, 6)
        if len(pred):
            anchor_wh = self.anchors.view(1, 1, 1, -1, 2).expand(*dense.shape[:4], 2)[positive]  # (K, 2)
            area = (anchor_wh * torch.exp(want[:, 2:4])).prod(1) / (self.input_size[0] * self.input_size[1])
            scale = (2.0 - area).unsqueeze(1)  # (K, 1)
            offsets = (torch.sigmoid(pred[:, :2]) - want[:, :2]) ** 2  # (K, 2): where in the cell
            sizes = (pred[:, 2:4] - want[:, 2:4]) ** 2  # (K, 2): log size over the anchor's
            box = (scale * (offsets + sizes)).sum() / n
            cls = nn.functional.cross_entropy(pred[:, 5:], want[:, 5].long(), reduction="sum") / n
        else:
            box = cls = out.sum() * 0.0
        self.last = {"box": float(box.detach()), "objectness": float(obj.detach()), "class": float(cls.detach())}
        return self.box_weight * box + obj + cls
