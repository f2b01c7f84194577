"""heron.ops.boxes.nms and batched_nms keep exactly what torchvision.ops keeps."""


import pytest
import torch
from torchvision.ops import batched_nms as tv_batched_nms
from torchvision.ops import nms as tv_nms

from heron.data.synthetic import clustered_boxes
from heron.ops.boxes import batched_nms, nms


def _clustered(n: int, seed: int, size: float = 640.0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` boxes around n/10 object centres (so many overlap) and distinct scores."""
    return clustered_boxes(n, seed, size)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 0.95])
def test_nms_keeps_what_torchvision_keeps(seed, threshold):
    boxes, scores = _clustered(600, seed)
    ours = nms(boxes, scores, threshold)
    assert ours.dtype == torch.int64
    assert torch.equal(ours, tv_nms(boxes, scores, threshold))


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_nms_result_does_not_depend_on_block_size(block):
    boxes, scores = _clustered(900, 5)
    assert torch.equal(nms(boxes, scores, 0.45, block=block), tv_nms(boxes, scores, 0.45))


def test_nms_tiled_path_on_many_kept_boxes():
    """Enough kept boxes that blocks meet them tile by tile (x-sorted runs), not in one matrix."""
    boxes, scores = _clustered(5000, 3, size=3000.0)
    for threshold in (0.2, 0.6):
        assert torch.equal(nms(boxes, scores, threshold), tv_nms(boxes, scores, threshold))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("threshold", [0.3, 0.6])
def test_batched_nms_keeps_what_torchvision_keeps(seed, threshold):
    boxes, scores = _clustered(800, seed)
    idxs = torch.randint(0, 5, (800,), generator=torch.Generator().manual_seed(seed))
    ours = batched_nms(boxes, scores, idxs, threshold)
    assert torch.equal(ours, tv_batched_nms(boxes, scores, idxs, threshold))
    # the same classes with boxes far apart: every class on its own
    assert set(ours.tolist()) == set().union(*(
        set(torch.where(idxs == c)[0][nms(boxes[idxs == c], scores[idxs == c], threshold)].tolist())
        for c in range(5)))


def test_batched_nms_other_classes_never_suppress():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10], [0.0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.5).tolist() == [0]


def test_empty_and_single_box():
    empty = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.dtype == torch.int64 and empty.shape == (0,)
    empty = batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)
    assert empty.dtype == torch.int64 and empty.shape == (0,)
    one = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert nms(one, torch.tensor([0.3]), 0.5).tolist() == [0]
    assert batched_nms(one, torch.tensor([0.3]), torch.tensor([4]), 0.5).tolist() == [0]


def test_float64_boxes_and_equal_scores():
    boxes, scores = _clustered(400, 4)
    assert torch.equal(nms(boxes.double(), scores.double(), 0.5), tv_nms(boxes.double(), scores.double(), 0.5))
    tied = (scores * 10).floor()  # ten score levels: equal scores keep their input order
    assert torch.equal(nms(boxes, tied, 0.5), tv_nms(boxes, tied, 0.5))
    assert torch.equal(nms(boxes, tied, 0.5), nms(boxes, tied, 0.5, block=3))
    idxs = torch.arange(400) % 3
    ours, theirs = batched_nms(boxes, tied, idxs, 0.5), tv_batched_nms(boxes, tied, idxs, 0.5)
    assert torch.equal(ours.sort().values, theirs.sort().values)  # same set; torchvision orders ties freely
    assert torch.equal(tied[ours], tied[theirs])


def test_order_is_decreasing_score():
    boxes, scores = _clustered(300, 9)
    kept = nms(boxes, scores, 0.5)
    assert bool((scores[kept][1:] < scores[kept][:-1]).all())


def test_threshold_is_compared_exactly():
    """IoU 0.7 in float32 is a hair below 0.7: it must not count as > 0.7 (nor as > 0.69999999)."""
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 7.0]])  # IoU = 70 / 100
    scores = torch.tensor([0.9, 0.8])
    iou = torch.tensor(70.0) / torch.tensor(100.0)  # the float32 IoU the boxes get
    just_below = iou.double().item() - 1e-12  # rounds to `iou` in float32, yet iou > it
    for threshold in (0.7, 0.69999999, 0.6999, 0.7001, just_below, iou.item()):
        assert torch.equal(nms(a, scores, threshold), tv_nms(a, scores, threshold)), threshold
    assert nms(a, scores, just_below).tolist() == [0]


def test_twenty_thousand_boxes_are_exact():
    boxes, scores = _clustered(20_000, 11, size=2000.0)  # its time is benchmarks/nms.py's to measure
    assert torch.equal(nms(boxes, scores, 0.5), tv_nms(boxes, scores, 0.5))
