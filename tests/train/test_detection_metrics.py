"""heron.train.detection_metrics against pycocotools' COCOeval, and on cases small enough to score by hand."""

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from heron.train.detection_metrics import (
    Detections,
    GroundTruth,
    coco_ap,
    coco_interpolated_precision,
    evaluate_detections,
    voc_ap,
)


def _random_set(seed: int, images: int = 20, classes: int = 3):
    """Ground truth and noisy detections over `images` images; class 2 never in the ground truth,
    class 1 never detected, image 3 without ground truth, image 5 without detections."""
    g = torch.Generator().manual_seed(seed)
    targets, predictions = [], []
    for i in range(images):
        n = 0 if i == 3 else int(torch.randint(1, 7, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 200
        gt = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 60 + 5], dim=1)
        gt_labels = torch.randint(0, 2, (n,), generator=g)  # classes 0 and 1 only
        targets.append(GroundTruth(gt, gt_labels))
        # a jittered copy of most ground truth boxes, plus clutter
        jitter = gt + torch.randn(n, 4, generator=g) * 3
        jitter = torch.cat([torch.minimum(jitter[:, :2], jitter[:, 2:]), torch.maximum(jitter[:, :2], jitter[:, 2:])], 1)
        clutter_n = 0 if i == 5 else int(torch.randint(0, 5, (1,), generator=g))
        cxy = torch.rand(clutter_n, 2, generator=g) * 200
        clutter = torch.cat([cxy, cxy + torch.rand(clutter_n, 2, generator=g) * 60 + 5], dim=1)
        boxes = torch.cat([jitter, clutter]) if i != 5 else torch.zeros(0, 4)
        labels = torch.cat([gt_labels, torch.randint(0, 3, (clutter_n,), generator=g)]) if i != 5 else \
            torch.zeros(0, dtype=torch.int64)
        labels = torch.where(labels == 1, torch.full_like(labels, 2), labels)  # class 1: no detections
        scores = torch.rand(boxes.shape[0], generator=g)
        keep = torch.rand(boxes.shape[0], generator=g) > 0.15
        predictions.append(Detections(boxes[keep], scores[keep], labels[keep]))
    return predictions, targets


def _xywh(box) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def _cocoeval(predictions, targets, classes: int) -> np.ndarray:
    """COCOeval bbox stats (stats[0] = mAP@[.5:.95], stats[1] = mAP@0.5) for the same data, built in memory."""
    images = [{"id": i + 1} for i in range(len(targets))]
    anns = []
    for i, t in enumerate(targets):
        for box, label in zip(t.boxes, t.labels):
            xywh = _xywh(box)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(label) + 1, "bbox": xywh,
                         "area": xywh[2] * xywh[3], "iscrowd": 0})
    results = [{"image_id": i + 1, "category_id": int(label) + 1, "bbox": _xywh(box), "score": float(score)}
               for i, p in enumerate(predictions) for box, score, label in zip(p.boxes, p.scores, p.labels)]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns,
                      "categories": [{"id": c + 1, "name": str(c)} for c in range(classes)]}
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_equals_cocoeval(seed):
    predictions, targets = _random_set(seed)
    ours = evaluate_detections(predictions, targets, num_classes=3)
    reference = _cocoeval(predictions, targets, 3)
    assert ours.map == pytest.approx(reference.stats[0], abs=1e-4)
    assert ours.map50 == pytest.approx(reference.stats[1], abs=1e-4)
    # per class: COCOeval's precision[T, R, K, area, maxdets], -1 where a class has no ground truth
    precision = reference.eval["precision"][:, :, :, 0, -1]
    for c in range(3):
        if precision[0, 0, c] < 0:
            assert math.isnan(ours.ap_per_class[c]) and math.isnan(ours.ap50_per_class[c])
        else:
            assert ours.ap_per_class[c] == pytest.approx(precision[:, :, c].mean(), abs=1e-4)
            assert ours.ap50_per_class[c] == pytest.approx(precision[0, :, c].mean(), abs=1e-4)
    assert math.isnan(ours.ap_per_class[2]) and ours.pr_curves[2] is None, "class 2 has no ground truth"
    assert ours.pr_curves[1] == {"recall": [], "precision": []}
    assert ours.ap_per_class[1] == 0.0, "class 1 has ground truth and no detections"
    assert ours.counts[2] == 0 and ours.counts[0] + ours.counts[1] == sum(len(t.labels) for t in targets)


def test_max_dets_caps_detections_per_image_and_class_as_cocoeval_does():
    predictions, targets = _random_set(4, images=6)
    crowded = []
    for p in predictions:  # 150 extra low-scoring boxes of class 0 per image
        extra = torch.rand(150, 2) * 200
        crowded.append(Detections(torch.cat([p.boxes, torch.cat([extra, extra + 30], dim=1)]),
                                  torch.cat([p.scores, torch.rand(150) * 0.5]),
                                  torch.cat([p.labels, torch.zeros(150, dtype=torch.int64)])))
    ours = evaluate_detections(crowded, targets, num_classes=3)
    reference = _cocoeval(crowded, targets, 3)
    assert ours.map == pytest.approx(reference.stats[0], abs=1e-4)
    assert ours.map50 == pytest.approx(reference.stats[1], abs=1e-4)


def test_hand_computed_two_gts_three_detections():
    """gts A, B; detections by score: hit A (IoU 1), miss, hit B (IoU 1).

    Precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1. COCO: 51 recall points (0..0.5) at precision 1 and 50
    (0.51..1) at the envelope 2/3: AP = (51 + 50 * 2/3) / 101 = 0.8350; VOC all-point: 0.5 * 1 + 0.5 * 2/3.
    """
    gts = GroundTruth(torch.tensor([[0.0, 0, 10, 10], [20.0, 20, 30, 30]]), torch.tensor([0, 0]))
    dets = Detections(torch.tensor([[0.0, 0, 10, 10], [50.0, 50, 60, 60], [20.0, 20, 30, 30]]),
                      torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 0]))
    coco = evaluate_detections([dets], [gts], num_classes=1)
    expected = (51 + 50 * 2 / 3) / 101
    assert coco.map50 == pytest.approx(expected, abs=1e-12)
    assert coco.map == pytest.approx(expected, abs=1e-12)  # perfect boxes: the same at every threshold
    voc = evaluate_detections([dets], [gts], num_classes=1, interpolation="voc")
    assert voc.map50 == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-12)
    np.testing.assert_allclose(coco.pr_curves[0]["recall"], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(coco.pr_curves[0]["precision"], [1.0, 0.5, 2 / 3])


def test_iou_threshold_decides_the_match():
    """One gt, one detection of IoU 0.6: a hit at 0.5 and 0.55, a miss from 0.6 up (COCO counts IoU >= t)."""
    gts = GroundTruth(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0]))
    dets = Detections(torch.tensor([[0.0, 0, 10, 6]]), torch.tensor([0.5]), torch.tensor([0]))
    scores = evaluate_detections([dets], [gts], num_classes=1)
    assert scores.map50 == pytest.approx(1.0)
    assert scores.map == pytest.approx(3 / 10)  # hits at 0.5, 0.55 and 0.6 (IoU 0.6 >= 0.6)


def test_duplicate_detection_is_a_false_positive():
    gts = GroundTruth(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0]))
    dets = Detections(torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 9.5]]), torch.tensor([0.9, 0.8]),
                      torch.tensor([0, 0]))
    assert evaluate_detections([dets], [gts], num_classes=1).map50 == pytest.approx(1.0)  # FP after full recall
    dets.scores = torch.tensor([0.8, 0.9])  # now the duplicate comes first and takes the box
    assert evaluate_detections([dets], [gts], num_classes=1).map50 == pytest.approx(1.0)
    dets.boxes[1] = torch.tensor([50.0, 50, 60, 60])  # an FP ahead of the hit: precision 1/2 at recall 1
    assert evaluate_detections([dets], [gts], num_classes=1).map50 == pytest.approx(0.5)


def test_interpolation_functions():
    recall, precision = np.array([0.25, 0.5, 0.5, 0.75]), np.array([1.0, 1.0, 0.6, 0.75])
    assert voc_ap(recall, precision) == pytest.approx(0.5 * 1.0 + 0.25 * 0.75)
    q = coco_interpolated_precision(recall, precision)
    assert q.shape == (101,) and q[0] == 1.0 and q[50] == 1.0 and q[51] == 0.75 and q[75] == 0.75 and q[76] == 0
    assert coco_ap(recall, precision) == pytest.approx((51 + 25 * 0.75) / 101)
    assert coco_ap(np.zeros(0), np.zeros(0)) == 0.0


def test_dicts_report_and_errors():
    predictions, targets = _random_set(0, images=5)
    as_dicts = [{"boxes": p.boxes, "scores": p.scores, "labels": p.labels} for p in predictions]
    gt_dicts = [{"boxes": t.boxes, "labels": t.labels} for t in targets]
    scores = evaluate_detections(as_dicts, gt_dicts, num_classes=3, class_names=["cat", "dog", "bird"])
    assert scores.map == evaluate_detections(predictions, targets, num_classes=3).map
    report = json.loads(json.dumps(scores.to_dict()))
    assert report["ap_per_class"][2] is None and report["class_names"] == ["cat", "dog", "bird"]
    assert "pr_curves" not in report and "pr_curves" in scores.to_dict(curves=True)
    table = scores.table()
    assert "bird" in table and table.splitlines()[-1].startswith("all")
    with pytest.raises(ValueError, match="labels must be class ids"):
        evaluate_detections(as_dicts, gt_dicts, num_classes=2)
    with pytest.raises(ValueError, match="4 predictions for 5 images"):
        evaluate_detections(as_dicts[:4], gt_dicts, num_classes=3)


def test_equal_iou_tie_goes_to_the_later_box_as_in_cocoeval():
    """det1 overlaps gts A and B equally (IoU 0.6); det2 is exactly B. COCO gives det1 the later box, B,
    so det2 finds B taken and misses: recall stops at 1/2, AP50 = 51 / 101. Taking A would have scored 1."""
    gts = GroundTruth(torch.tensor([[0.0, 0, 10, 10], [5.0, 0, 15, 10]]), torch.tensor([0, 0]))
    dets = Detections(torch.tensor([[2.5, 0, 12.5, 10], [5.0, 0, 15, 10]]), torch.tensor([0.9, 0.8]),
                      torch.tensor([0, 0]))
    ours = evaluate_detections([dets], [gts], num_classes=1)
    reference = _cocoeval([dets], [gts], 1)
    assert ours.map50 == pytest.approx(reference.stats[1], abs=1e-12)
    assert ours.map50 == pytest.approx(51 / 101)
    assert ours.map == pytest.approx(reference.stats[0], abs=1e-12)
