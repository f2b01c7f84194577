"""The YOLO-style detector's arithmetic: targets, decoding, loss and the selection of detections."""

import math

import torch
from torchvision.ops import batched_nms as tv_batched_nms

from heron.tasks.detect.postprocess import select_detections
from heron.tasks.detect.yolo import TARGET_FIELDS, YoloHead, YoloLoss, decode, encode_targets, pack_targets

INPUT = (256, 320)  # (H, W): a rectangular input, 8 x 10 cells of 32 px
GRID = (8, 10)
ANCHORS = torch.tensor([[20.0, 20.0], [60.0, 40.0], [40.0, 90.0]])


def _boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g) * torch.tensor([INPUT[1], INPUT[0]])
    size = torch.rand(n, 2, generator=g) * 80 + 10
    return torch.cat([centre - size / 2, centre + size / 2], 1), torch.randint(0, 3, (n,), generator=g)


def _perfect_output(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The raw head output `(1, A*(5+C), h, w)` whose decoding is exactly `target`'s boxes."""
    h, w, a, _ = target.shape
    cells = torch.full((h, w, a, 5 + num_classes), -12.0)
    tx = target[..., :2].clamp(1e-6, 1 - 1e-6)
    cells[..., :2] = torch.log(tx / (1 - tx))
    cells[..., 2:4] = target[..., 2:4]
    cells[..., 4] = torch.where(target[..., 4] > 0, 12.0, -12.0)
    cls = torch.nn.functional.one_hot(target[..., 5].long(), num_classes).float()
    cells[..., 5:] = cls * 24.0 - 12.0
    return cells.permute(2, 3, 0, 1).reshape(1, a * (5 + num_classes), h, w)


def test_encoding_then_decoding_returns_the_boxes():
    boxes, labels = _boxes(12, 0)
    target = encode_targets(boxes, labels, ANCHORS, GRID, INPUT)
    assert target.shape == (*GRID, len(ANCHORS), TARGET_FIELDS)
    out = _perfect_output(target, 3)
    decoded, objectness, probs = decode(out, ANCHORS, INPUT)
    assert decoded.shape == (1, 8 * 10 * 3, 4) and probs.shape == (1, 240, 3)
    found = decoded[0][objectness[0] > 0.5]
    kept = int(target[..., 4].sum())
    assert len(found) == kept >= 10  # at most a couple share a cell and anchor
    # each decoded box is one of the true ones, with its class
    iou = torch.tensor([[float((f - b).abs().max()) for b in boxes] for f in found])
    best = iou.min(1)
    assert best.values.max() < 1e-3
    assert probs[0][objectness[0] > 0.5].argmax(1).tolist() == labels[best.indices].tolist()


def test_a_box_goes_to_the_cell_of_its_midpoint_and_the_anchor_of_its_shape():
    box = torch.tensor([[100.0, 50.0, 160.0, 90.0]])  # centre (130, 70): column 4, row 2; 60 x 40
    target = encode_targets(box, torch.tensor([2]), ANCHORS, GRID, INPUT)
    where = target[..., 4].nonzero().tolist()
    assert where == [[2, 4, 1]]
    tx, ty, tw, th, obj, cls = target[2, 4, 1].tolist()
    assert math.isclose(tx, 130 / 32 - 4, abs_tol=1e-6) and math.isclose(ty, 70 / 32 - 2, abs_tol=1e-6)
    assert abs(tw) < 1e-6 and abs(th) < 1e-6 and obj == 1.0 and cls == 2.0
    empty = encode_targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), ANCHORS, GRID, INPUT)
    assert empty.abs().sum() == 0


def _packed(seed, n=6, max_boxes=8):
    boxes, labels = _boxes(n, seed)
    dense = encode_targets(boxes, labels, ANCHORS, GRID, INPUT)
    return dense, pack_targets(dense, boxes, max_boxes)


def test_loss_is_small_for_the_perfect_output_and_falls_with_training():
    torch.manual_seed(0)
    dense, row = _packed(1)
    loss = YoloLoss(ANCHORS, 3, GRID, INPUT, max_boxes=8)
    perfect = loss(_perfect_output(dense, 3), row[None])
    wrong = loss(torch.randn(1, 3 * 8, *GRID), row[None])
    assert perfect < 0.05 < wrong
    unpacked, truth = loss.unpack(row[None])
    torch.testing.assert_close(unpacked[0], dense)
    head = YoloHead((16, *GRID), len(ANCHORS), 3, width=16)
    features = torch.randn(4, 16, *GRID)
    targets = torch.stack([_packed(s)[1] for s in range(4)])
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        value = loss(head(features), targets)
        first = float(value.detach()) if first is None else first
        opt.zero_grad()
        value.backward()
        opt.step()
    assert float(value.detach()) < 0.3 * first
    assert set(loss.last) == {"box", "objectness", "class"}


def test_objectness_starts_at_the_prior_everywhere():
    head = YoloHead((8, 4, 4), 2, 5, width=8).eval()
    _, objectness, _ = decode(head(torch.zeros(1, 8, 4, 4)), ANCHORS[:2], (128, 128))
    torch.testing.assert_close(objectness, torch.full_like(objectness, 0.01), atol=1e-4, rtol=0)


def test_selected_detections_are_torchvisions_class_wise_nms_of_the_scored_candidates():
    g = torch.Generator().manual_seed(3)
    boxes, _ = _boxes(300, 4)
    objectness = torch.rand(300, generator=g)
    probs = torch.softmax(torch.randn(300, 3, generator=g) * 2, 1)
    found = select_detections(boxes, objectness, probs, score_threshold=0.2, iou_threshold=0.45, max_detections=50)
    scores = objectness[:, None] * probs
    index = (scores > 0.2).nonzero()
    values = scores[index[:, 0], index[:, 1]]
    keep = tv_batched_nms(boxes[index[:, 0]], values, index[:, 1], 0.45)[:50]
    torch.testing.assert_close(found.scores, values[keep])
    assert found.labels.tolist() == index[keep, 1].tolist()
    torch.testing.assert_close(found.boxes, boxes[index[keep, 0]])
    none = select_detections(boxes, objectness * 0, probs, 0.2, 0.45)
    assert none.boxes.shape == (0, 4) and len(none.scores) == 0
