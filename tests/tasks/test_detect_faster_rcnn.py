"""The Faster R-CNN head on cached maps: truth packing, anchors, losses in both modes, training and detection."""

import math

import torch
from torchvision.ops import box_iou

from heron.tasks.detect.faster_rcnn import (FasterRCNNHead, LOSS_PARTS, default_anchor_sizes, faster_rcnn_loss,
                                            pack_truth, unpack_truth)
from heron.train import Learner
from heron.transfer.extract import FeatureBatches

MAP = (32, 8, 8)  # (C, h, w): small maps, stride 16 on a 128 px input
INPUT = (128, 128)
STRIDE = 16
CLASSES = 2
MAX_BOXES = 4


def _head(**kwargs) -> FasterRCNNHead:
    return FasterRCNNHead(MAP, CLASSES, INPUT, width=32, representation=256, **kwargs)


def _planted(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps `(n, C*h*w)` with 1-2 boxes each and their packed truth `(n, MAX_BOXES, 5)`.

    A box covers whole cells (2-4 per side, one in the left half, maybe one
    in the right); inside it, channel `label` is 1 and channels 2-5 hold each
    cell's distance (in cells, over 4) to the box's left, top, right and
    bottom edges, as a trunk's wide receptive field would tell a cell where
    its object ends; everything else is weak noise.
    """
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(n, *MAP, generator=g) * 0.1
    truth = []
    for i in range(n):
        boxes, labels = [], []
        for half in range(1 + int(torch.rand(1, generator=g) < 0.5)):
            w, h = (int(v) for v in torch.randint(2, 5, (2,), generator=g))
            c0 = half * 4 + int(torch.randint(0, 4 - w + 1, (1,), generator=g))
            r0 = int(torch.randint(0, 8 - h + 1, (1,), generator=g))
            label = int(torch.randint(0, CLASSES, (1,), generator=g))
            maps[i, label, r0:r0 + h, c0:c0 + w] = 1.0
            cols, rows = torch.arange(w, dtype=torch.float32)[None], torch.arange(h, dtype=torch.float32)[:, None]
            for channel, distance in enumerate((cols, rows, w - 1 - cols, h - 1 - rows), start=2):
                maps[i, channel, r0:r0 + h, c0:c0 + w] = distance.expand(h, w) / 4
            boxes.append([c0 * STRIDE, r0 * STRIDE, (c0 + w) * STRIDE, (r0 + h) * STRIDE])
            labels.append(label)
        truth.append(pack_truth(torch.tensor(boxes, dtype=torch.float32), torch.tensor(labels), MAX_BOXES))
    return maps.reshape(n, -1), torch.stack(truth)


def _batches(maps: torch.Tensor, truth: torch.Tensor, shuffle: bool) -> FeatureBatches:
    """Batches ((maps, truth), truth); the targets are flat rows, so FeatureBatches does not read M as copies."""
    return FeatureBatches(maps.numpy(), torch.arange(len(maps)).numpy(), truth.reshape(len(truth), -1),
                          batch_size=8, shuffle=shuffle, extra=truth)


def test_pack_and_unpack_round_trip_with_padding():
    boxes = torch.tensor([[1.0, 2.0, 30.0, 40.0], [5.0, 6.0, 7.0, 8.0]])
    packed = pack_truth(boxes, torch.tensor([1, 0]), 4)
    assert packed.shape == (4, 5)
    assert torch.equal(packed[2:], torch.tensor([[0.0, 0, 0, 0, -1]] * 2))
    empty = pack_truth(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 4)
    (b0, l0), (b1, l1) = unpack_truth(torch.stack([packed, empty]))
    assert torch.equal(b0, boxes) and torch.equal(l0, torch.tensor([1, 0])) and l0.dtype == torch.int64
    assert b1.shape == (0, 4) and l1.shape == (0,)
    flat = unpack_truth(torch.stack([packed, empty]).reshape(2, -1))  # the flat form FeatureBatches carries
    assert torch.equal(flat[0][0], boxes)
    assert len(unpack_truth(pack_truth(torch.rand(6, 4), torch.zeros(6), 4)[None])[0][0]) == 4  # extra boxes dropped


def test_nine_anchors_per_cell_with_the_documented_sizes_and_ratios():
    head = _head()
    sizes = default_anchor_sizes(INPUT)
    assert sizes == (16.0, 32.0, 64.0) and head.anchor_sizes == sizes
    features, images = head._features(torch.zeros(2, *MAP))
    anchors = head.rpn.anchor_generator(images, list(features.values()))
    assert len(anchors) == 2 and anchors[0].shape == (MAP[1] * MAP[2] * 9, 4)
    first = anchors[0][:9]  # the nine anchors of cell (0, 0), centred on the cell's corner (0, 0)
    wh = first[:, 2:] - first[:, :2]
    want = torch.tensor([[s / math.sqrt(r), s * math.sqrt(r)] for r in (0.5, 1.0, 2.0) for s in sizes])
    assert torch.allclose(wh, want, atol=1.0)  # torchvision rounds the corners to whole pixels
    assert torch.allclose((first[:, :2] + first[:, 2:]) / 2, torch.zeros(9, 2), atol=0.5)
    step = anchors[0][9:18] - first  # the next cell to the right: one stride along x
    assert torch.allclose(step, torch.tensor([STRIDE, 0.0, STRIDE, 0.0]).expand(9, 4))


def test_training_lowers_the_loss_and_detect_finds_the_planted_boxes():
    torch.manual_seed(0)
    maps, truth = _planted(48, seed=1)
    valid_maps, valid_truth = _planted(16, seed=2)
    head = _head()
    learner = Learner(head, _batches(maps, truth, True), _batches(valid_maps, valid_truth, False),
                      loss_fn=faster_rcnn_loss, lr=1e-2, metrics=(), quiet=True)
    history = learner.fit(12)
    assert {"train_loss", "valid_loss", "epoch"} <= set(history[0])
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    assert history[-1]["valid_loss"] < 0.6 * history[0]["valid_loss"]
    assert set(head.last) == set(LOSS_PARTS)
    found, total = 0, 0
    for (boxes, scores, labels), (true_boxes, true_labels) in zip(head.detect(valid_maps), unpack_truth(valid_truth)):
        assert labels.dtype == torch.int64 and ((labels >= 0) & (labels < CLASSES)).all()
        assert (boxes >= 0).all() and (boxes <= INPUT[0]).all()
        keep = scores > 0.5
        for box, label in zip(true_boxes, true_labels):
            same = keep & (labels == label)
            total += 1
            found += int(same.any() and box_iou(box[None], boxes[same]).max() > 0.5)
    assert found >= 0.75 * total  # 24 of 26 when written


def test_detect_on_maps_without_objects_returns_empty_tensors():
    head = _head(score_threshold=0.999)  # an untrained head's ~1/3 class scores all fall below
    detections = head.detect(torch.zeros(3, MAP[0] * MAP[1] * MAP[2]))
    assert len(detections) == 3
    for boxes, scores, labels in detections:
        assert boxes.shape == (0, 4) and scores.shape == (0,) and labels.shape == (0,)
        assert labels.dtype == torch.int64
    assert head.training  # detect puts the module's mode back


def test_images_without_boxes_train_and_validation_returns_the_loss_parts():
    torch.manual_seed(0)
    maps, truth = _planted(4, seed=3)
    truth[1:3] = pack_truth(torch.zeros(0, 4), torch.zeros(0), MAX_BOXES)  # two images with nothing in them
    head = _head()
    pred = head((maps.view(4, *MAP), truth))
    assert pred.shape == (4, len(LOSS_PARTS)) and torch.isfinite(pred).all()
    faster_rcnn_loss(pred, truth).backward()
    assert head.reduce[0].weight.grad is not None
    empty = pack_truth(torch.zeros(0, 4), torch.zeros(0), MAX_BOXES).expand(4, -1, -1)
    assert torch.isfinite(head((maps, empty))).all()  # a whole batch without objects
    head.eval()
    state = torch.random.get_rng_state()
    with torch.inference_mode():
        valid = head((maps, truth))
    assert valid.shape == (4, len(LOSS_PARTS)) and torch.isfinite(valid).all()
    assert torch.allclose(valid[0], valid[3]) and not valid.requires_grad
    assert not head.rpn.training and not head.roi_heads.training  # switched back after the loss
    assert torch.equal(torch.random.get_rng_state(), state)  # validating leaves the training draws alone


def test_the_same_seed_gives_the_same_losses():
    maps, truth = _planted(4, seed=4)
    losses = []
    for _ in range(2):
        torch.manual_seed(5)
        losses.append(_head()((maps, truth)))
    assert torch.equal(losses[0], losses[1])


def test_no_batch_norm_or_dropout_in_the_parts_switched_to_training_mode():
    head = _head()
    kinds = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.Dropout)
    assert not any(isinstance(m, kinds) for m in [*head.rpn.modules(), *head.roi_heads.modules()])
