"""heron.ops.anchors: shape IoU against torchvision's box IoU, k-means on planted shape clusters."""

import pytest
import torch
from torchvision.ops import box_iou

from heron.ops.anchors import kmeans_anchors, mean_best_iou, shape_iou

PLANTED = torch.tensor([[12.0, 20.0], [60.0, 40.0], [30.0, 90.0], [200.0, 150.0]])


def _planted(per: int = 150, seed: int = 0, jitter: float = 0.05) -> torch.Tensor:
    """`per` shapes around each PLANTED shape, multiplied by lognormal-ish noise of about `jitter`."""
    g = torch.Generator().manual_seed(seed)
    base = PLANTED.repeat_interleave(per, dim=0)
    return base * torch.exp(jitter * torch.randn(base.shape, generator=g))


def test_shape_iou_is_iou_of_centred_boxes():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(9, 2, generator=g) * 50 + 1, torch.rand(7, 2, generator=g) * 50 + 1
    centred = lambda wh: torch.cat([-wh / 2, wh / 2], dim=1)  # noqa: E731
    torch.testing.assert_close(shape_iou(a, b), box_iou(centred(a), centred(b)))
    assert torch.equal(shape_iou(torch.zeros(1, 2), torch.zeros(1, 2)), torch.zeros(1, 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_recovers_planted_shapes(seed):
    wh = _planted(seed=seed)
    anchors = kmeans_anchors(wh, 4, seed=seed)
    assert anchors.shape == (4, 2)
    areas = anchors.prod(dim=1)
    assert bool((areas[1:] >= areas[:-1]).all()), "sorted by area ascending"
    expected = PLANTED[torch.argsort(PLANTED.prod(dim=1))]
    torch.testing.assert_close(anchors, expected, rtol=0.05, atol=0.0)
    assert mean_best_iou(wh, anchors) > 0.9
    assert mean_best_iou(wh, anchors) > mean_best_iou(wh, kmeans_anchors(wh, 2, seed=seed))


def test_kmeans_is_deterministic_for_a_seed():
    wh = _planted(per=80, seed=3, jitter=0.4)  # overlapping clusters: the seed matters
    assert torch.equal(kmeans_anchors(wh, 6, seed=7), kmeans_anchors(wh, 6, seed=7))
    assert torch.equal(kmeans_anchors(wh.clone(), 6, seed=0), kmeans_anchors(wh, 6))
    assert not torch.equal(kmeans_anchors(wh, 6, seed=7), kmeans_anchors(wh, 6, seed=0))


def test_kmeans_with_as_many_clusters_as_distinct_shapes():
    wh = torch.tensor([[10.0, 10.0]] * 5 + [[50.0, 20.0]] * 3 + [[5.0, 40.0]] * 2)
    anchors = kmeans_anchors(wh, 3)
    assert torch.equal(anchors, torch.tensor([[10.0, 10.0], [5.0, 40.0], [50.0, 20.0]]))  # areas 100, 200, 1000
    assert mean_best_iou(wh, anchors) == pytest.approx(1.0)


def test_kmeans_rejects_bad_k_clearly():
    wh = torch.tensor([[10.0, 10.0], [10.0, 10.0], [20.0, 5.0], [0.0, 7.0]])
    with pytest.raises(ValueError, match="2 distinct box shapes"):
        kmeans_anchors(wh, 3)
    with pytest.raises(ValueError, match="k >= 1"):
        kmeans_anchors(wh, 0)
    with pytest.raises(ValueError, match=r"Tensor\[N, 2\]"):
        kmeans_anchors(torch.ones(4, 4), 2)
