"""The region-based detectors: sampled regions, their loss and detections, and each method end to end."""

import json

import pytest
import torch
from torch.nn import functional as F

from heron.config import DetectConfig
from heron.data.synthetic import write_detection_shapes
from heron.errors import TrainingError
from heron.ops.boxes import box_iou, decode_deltas
from heron.tasks.detect import evaluate, load_detector, predict, train
from heron.tasks.detect.region_head import RegionLoss, region_detections
from heron.tasks.detect.regions import mirror_regions, sample_regions


def _truth():
    return torch.tensor([[10.0, 10.0, 50.0, 60.0], [70.0, 20.0, 120.0, 90.0]]), torch.tensor([2, 0])


def test_sampled_regions_are_labelled_by_overlap_and_their_deltas_lead_to_the_true_box():
    boxes, labels = _truth()
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=g) * 110
    proposals = torch.cat([xy, xy + 8 + torch.rand(300, 2, generator=g) * 50], 1)
    rows = sample_regions(proposals, boxes, labels, 32, torch.Generator().manual_seed(1))
    assert rows.shape == (32, 10) and (rows[:, 9] == 1).all()
    iou = box_iou(rows[:, :4], boxes).max(1).values
    fg = rows[:, 4] > 0
    assert 1 <= int(fg.sum()) <= 8  # a quarter of 32 at most
    assert (iou[fg] >= 0.5).all() and (iou[~fg] < 0.5).all()
    best = box_iou(rows[fg, :4], boxes).argmax(1)
    assert torch.equal(rows[fg, 4].long(), labels[best] + 1)
    torch.testing.assert_close(decode_deltas(rows[fg, 5:9], rows[fg, :4]), boxes[best], atol=1e-3, rtol=0)
    mirrored = mirror_regions(rows, 128)
    flipped_truth = torch.stack([128 - boxes[:, 2], boxes[:, 1], 128 - boxes[:, 0], boxes[:, 3]], 1)
    torch.testing.assert_close(decode_deltas(mirrored[fg, 5:9], mirrored[fg, :4]), flipped_truth[best], atol=1e-3,
                               rtol=0)


def test_an_image_without_objects_gets_background_regions_and_unused_rows():
    rows = sample_regions(torch.tensor([[0.0, 0.0, 20.0, 20.0], [5.0, 5.0, 30.0, 40.0]]), torch.zeros(0, 4),
                          torch.zeros(0, dtype=torch.long), 8, torch.Generator().manual_seed(0))
    assert rows[:2, 9].tolist() == [1, 1] and rows[2:, 9].sum() == 0 and (rows[:, 4] == 0).all()


def test_region_loss_is_the_cross_entropy_plus_the_true_class_smooth_l1():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 5, 16, generator=g)  # 3 classes: 4 scores + 12 deltas
    regions = torch.zeros(2, 5, 10)
    regions[..., 9] = 1
    regions[0, 4, 9] = 0  # one unused row
    regions[0, :2, 4] = torch.tensor([1.0, 3.0])
    regions[0, :2, 5:9] = torch.randn(2, 4, generator=g)
    loss = RegionLoss(3)(pred, regions)
    flat_pred, flat_regions = pred.reshape(-1, 16)[[0, 1, 2, 3, 5, 6, 7, 8, 9]], regions.reshape(-1, 10)[
        [0, 1, 2, 3, 5, 6, 7, 8, 9]]
    cls = F.cross_entropy(flat_pred[:, :4], flat_regions[:, 4].long())
    box = sum(F.smooth_l1_loss(flat_pred[i, 4 + 4 * (c - 1) : 8 + 4 * (c - 1)], flat_regions[i, 5:9], reduction="sum")
              for i, c in ((0, 1), (1, 3))) / 9
    torch.testing.assert_close(loss, cls + box)


def test_region_detections_move_the_proposal_by_the_class_deltas_and_suppress_duplicates():
    proposals = torch.tensor([[10.0, 10.0, 40.0, 40.0], [11.0, 10.0, 41.0, 40.0], [60.0, 60.0, 90.0, 100.0]])
    pred = torch.full((3, 1 + 2 + 8), -10.0)
    pred[:, 3:] = 0.0  # no deltas: the proposal's own box
    pred[0, 2], pred[1, 2], pred[2, 1] = 10.0, 9.0, 10.0  # regions 0, 1: class 1; region 2: class 0
    found = region_detections(pred, proposals, (128, 128), 0.5, 0.45)
    assert found.labels.tolist() == [1, 0]
    torch.testing.assert_close(found.boxes, proposals[[0, 2]])


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_detection_shapes(tmp_path_factory.mktemp("shapes") / "set", images=24, size=128, seed=1,
                                  max_objects=2, min_frac=0.25, max_frac=0.45)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _config(data, out, cache, method, **overrides):
    base = dict(data=str(data), valid=str(data), out=str(out), size=[160], method=method, epochs=8, lr=3e-3,
                batch_size=8, width=32, proposals=60, regions=16, crop=64, quiet=True, cache_dir=str(cache),
                workers=1, engine="torch", precision="fp32", seed=0)
    return DetectConfig(**{**base, **overrides})


@pytest.mark.parametrize("method", ["rcnn", "fast-rcnn", "faster-rcnn"])
def test_each_method_trains_with_a_falling_loss_and_its_run_predicts_and_evaluates(method, shapes, cache, tmp_path):
    run = train(_config(shapes, tmp_path / "run", cache, method, lr=1e-2 if method == "faster-rcnn" else 3e-3))
    losses = [row["train_loss"] for row in run.history]
    assert losses[-1] < 0.8 * losses[0], losses
    saved = json.loads((run.path / "config.json").read_text())
    assert saved["result"]["method"] == method and saved["method"] == method
    for name in ("model.safetensors", "metrics.jsonl", "report.html", "detections.png", "pr_curves.png"):
        assert (run.path / name).is_file(), name
    detector = load_detector(run.path, precision="fp32")
    images = sorted((shapes / "images").glob("*.png"))[:2]
    found = list(predict(detector, images, score_threshold=0.0))
    assert [p for p, _, _ in found] == images and all(e is None for _, _, e in found)
    for _, detection, _ in found:
        assert detection.boxes.shape[1] == 4 and len(detection.boxes) == len(detection.scores)
        assert ((detection.boxes >= -1e-3) & (detection.boxes <= 128 + 1e-3)).all()  # original pixels, in the image
    scores = evaluate(run.path, shapes)
    assert scores["map50"] == pytest.approx(run.metrics["map50"], abs=0.05)


def test_fine_tuning_is_refused_for_the_region_methods(shapes, tmp_path):
    with pytest.raises(TrainingError, match="--unfreeze"):
        train(_config(shapes, tmp_path / "run", tmp_path / "cache", "fast-rcnn", unfreeze="1"))
    with pytest.raises(TrainingError, match="--method"):
        DetectConfig(method="ssd")
