"""Selective search: proposals cover drawn shapes, outputs are well formed and seeded, the similarity measures
match their formulas on hand-made regions, and proposal_recall matches hand-counted answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from heron.ops import selective_search as ss
from heron.ops.boxes import box_iou
from heron.ops.selective_search import proposal_recall, selective_search


def _scene(size: int = 160, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy grey background with two rectangles, an ellipse and a thin bar of different colours, and their boxes."""
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(120, 12, (size, size, 3)), 0, 255).astype(np.uint8)
    img[20:70, 15:90] = (220, 30, 30)
    img[100:150, 100:130] = (30, 200, 40)
    img[30:45, 120:150] = (240, 220, 40)
    yy, xx = np.mgrid[:size, :size]
    ellipse = ((xx - 50) / 25) ** 2 + ((yy - 120) / 18) ** 2 <= 1
    img[ellipse] = (40, 40, 220)
    ys, xs = np.nonzero(ellipse)
    boxes = [(15, 20, 90, 70), (100, 100, 130, 150), (120, 30, 150, 45),
             (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)]
    return img, np.asarray(boxes, np.float32)


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    return _scene()


@pytest.fixture(scope="module")
def fast_boxes(scene) -> np.ndarray:
    return selective_search(scene[0], mode="fast", max_proposals=None)


@pytest.mark.parametrize("mode", ["single", "fast"])
def test_every_shape_gets_a_close_proposal(scene, mode):
    img, truth = scene
    boxes = selective_search(img, mode=mode)
    best = box_iou(torch.from_numpy(truth), torch.from_numpy(boxes)).max(dim=1).values
    assert (best >= 0.7).all(), best


def test_boxes_are_well_formed(scene, fast_boxes):
    h, w = scene[0].shape[:2]
    assert fast_boxes.dtype == np.float32 and fast_boxes.ndim == 2 and fast_boxes.shape[1] == 4
    assert (fast_boxes[:, :2] >= 0).all() and (fast_boxes[:, 2] <= w).all() and (fast_boxes[:, 3] <= h).all()
    assert (fast_boxes[:, 2] - fast_boxes[:, 0] >= 4).all() and (fast_boxes[:, 3] - fast_boxes[:, 1] >= 4).all()
    assert len(np.unique(fast_boxes, axis=0)) == len(fast_boxes)
    assert (fast_boxes == np.round(fast_boxes)).all()  # pixel edges
    assert [0, 0, w, h] in fast_boxes.tolist()  # the top of the hierarchy is the whole image


def test_same_seed_same_boxes_other_seed_same_set_other_order(scene, fast_boxes):
    img = scene[0]
    again = selective_search(img, mode="fast", max_proposals=None)
    other = selective_search(img, mode="fast", max_proposals=None, seed=1)
    np.testing.assert_array_equal(fast_boxes, again)
    assert set(map(tuple, other.tolist())) == set(map(tuple, fast_boxes.tolist()))
    assert not np.array_equal(other, fast_boxes)


def test_max_proposals_and_min_box(scene, fast_boxes):
    img = scene[0]
    top = selective_search(img, mode="fast", max_proposals=50)
    np.testing.assert_array_equal(top, fast_boxes[:50])
    big = selective_search(img, mode="fast", max_proposals=None, min_box=30)
    assert (big[:, 2:] - big[:, :2] >= 30).all()
    np.testing.assert_array_equal(big, fast_boxes[(fast_boxes[:, 2:] - fast_boxes[:, :2] >= 30).all(axis=1)])


def test_grey_input_is_the_grey_colour_image(scene):
    grey = scene[0][:, :, 1]
    boxes = selective_search(grey, mode="single")
    np.testing.assert_array_equal(boxes, selective_search(np.repeat(grey[:, :, None], 3, axis=2), mode="single"))
    assert len(boxes) > 0


@pytest.mark.parametrize("shape", [(8, 8, 3), (1, 1, 3), (5, 40)])
def test_tiny_images_do_not_crash(shape):
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    boxes = selective_search(img, mode="fast", min_box=1)
    assert len(boxes) >= 1 and boxes.shape[1] == 4
    assert [0, 0, shape[1], shape[0]] in boxes.tolist()


def test_a_large_photo_sized_image_is_segmented_coarsely_enough():
    """At 640 x 480 felzenszwalb's k is scaled up, so the segment count (and the time) stays bounded."""
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(128, 30, (480, 640, 3)), 0, 255).astype(np.uint8)
    img[100:300, 200:450] = (200, 40, 40)
    boxes = selective_search(img, mode="single", max_proposals=None)
    assert len(boxes) < 3000
    assert box_iou(torch.tensor([[200.0, 100, 450, 300]]), torch.from_numpy(boxes)).max() >= 0.9


def test_unknown_mode_and_bad_shape_are_value_errors():
    with pytest.raises(ValueError, match="mode"):
        selective_search(np.zeros((8, 8, 3), np.uint8), mode="slow")
    with pytest.raises(ValueError, match="shape"):
        selective_search(np.zeros((8, 8, 2), np.uint8))


def test_modes_are_the_papers_strategies():
    assert ss.MODES["single"] == [("hsv", 100, "CTSF")]
    assert sorted(ss.MODES["fast"]) == sorted((c, k, s) for c in ("hsv", "lab") for k in (50, 100)
                                              for s in ("CTSF", "TSF"))
    assert len(ss.MODES["quality"]) == 80


# Hand-made regions on a 10 x 10 image: 0 = columns 0..3 (40 px), 1 = rows 0..4 of columns 4..9 (30 px),
# 2 = rows 5..9 of columns 4..9 (30 px).
LABELS = np.zeros((10, 10), np.int64)
LABELS[:5, 4:] = 1
LABELS[5:, 4:] = 2


def test_sizes_boxes_and_neighbours_of_hand_made_regions():
    boxes, sizes = ss._boxes_and_sizes(LABELS, 3)
    assert sizes.tolist() == [40, 30, 30]
    assert boxes.tolist() == [[0, 0, 4, 10], [4, 0, 10, 5], [4, 5, 10, 10]]
    assert ss._neighbour_pairs(LABELS).tolist() == [[0, 1], [0, 2], [1, 2]]


def test_similarity_is_the_sum_of_the_direct_formulas():
    colour = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]], np.float32)
    texture = np.array([[1.0, 0.0], [0.25, 0.75], [0.5, 0.5]], np.float32)
    regions = ss._Regions.start(LABELS, colour, texture)
    c = min(0.5, 0.2) + min(0.5, 0.3) + min(0.0, 0.5)  # histogram intersection: the sum of the minima
    t = min(1.0, 0.25) + min(0.0, 0.75)
    size = 1 - (40 + 30) / 100
    fill = 1 - (10 * 10 - 40 - 30) / 100  # the joint box of 0 and 1 is the whole image
    assert ss._intersection(colour[0], colour[1]) == pytest.approx(c)
    assert ss._size_similarity(40, 30, 100) == pytest.approx(size)
    assert ss._fill_similarity([0, 0, 4, 10], [4, 0, 10, 5], 40, 30, 100) == pytest.approx(fill)
    for sims, want in [("CTSF", c + t + size + fill), ("TSF", t + size + fill), ("S", size), ("F", fill)]:
        assert regions.similarity(0, np.array([1]), sims)[0] == pytest.approx(want)
    # 1 and 2 fill their joint box (4, 0, 10, 10) exactly
    assert regions.similarity(1, np.array([2]), "F")[0] == pytest.approx(1.0)


def test_merge_averages_histograms_by_size_and_joins_boxes():
    colour = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], np.float32)
    regions = ss._Regions.start(LABELS, colour, None)
    t = regions.merge(0, 1)
    assert t == 3 and regions.count == 4
    np.testing.assert_allclose(regions.colour[t], [40 / 70, 30 / 70], rtol=1e-6)
    assert regions.sizes[t] == 70 and regions.boxes[t].tolist() == [0, 0, 10, 10]


def test_grouping_forms_every_region_up_to_the_whole_image():
    img = np.zeros((10, 10, 3), np.float32)
    img[LABELS == 1] = 0.5
    img[LABELS == 2] = 1.0
    colour = ss._colour_histograms(img, LABELS, 3)
    texture = ss._texture_histograms(img, LABELS, 3)
    np.testing.assert_allclose(colour.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(texture.sum(axis=1), 1, rtol=1e-6)
    assert colour.shape == (3, 75) and texture.shape == (3, 8 * 10 * 3)
    assert colour[0, [0, 25, 50]].tolist() == pytest.approx([1 / 3] * 3)  # black: the first bin of each channel
    boxes = ss._group(LABELS, ss._neighbour_pairs(LABELS), colour, texture, "CTSF")
    assert len(boxes) == 2 * 3 - 1
    assert boxes[:3].tolist() == [[0, 0, 4, 10], [4, 0, 10, 5], [4, 5, 10, 10]]
    assert boxes[-1].tolist() == [0, 0, 10, 10]


def test_ranking_is_position_times_a_seeded_random_number():
    a = np.array([[0, 0, 5, 5], [5, 5, 10, 10], [0, 0, 10, 10]])  # creation order: last is the top, position 1
    b = np.array([[0, 0, 5, 5], [2, 2, 9, 9], [0, 0, 10, 10]])
    rnd = np.random.default_rng(3).random(6)
    value = np.array([3, 2, 1, 3, 2, 1]) * rnd
    order = np.argsort(value, kind="stable")
    want, seen = [], set()
    for box in np.concatenate([a, b])[order].tolist():
        if tuple(box) not in seen:
            seen.add(tuple(box))
            want.append(box)
    got = ss._rank([a, b], seed=3, min_box=1, max_proposals=None)
    assert got.tolist() == want
    assert len(got) == 4


def test_proposal_recall_counts_true_boxes_over_all_images():
    truths = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32),
              np.array([[50, 50, 60, 60]], np.float32),
              np.zeros((0, 4), np.float32)]
    proposals = [np.array([[0, 0, 10, 10], [100, 100, 110, 110], [20, 20, 30, 32]], np.float32),  # IoU 100/120
                 np.array([[0, 0, 5, 5]], np.float32),
                 np.array([[0, 0, 4, 4]], np.float32)]
    assert proposal_recall(proposals, truths, counts=(1, 3)) == {1: pytest.approx(1 / 3), 3: pytest.approx(2 / 3)}
    assert proposal_recall(proposals, truths, counts=(3,), iou=0.9) == {3: pytest.approx(1 / 3)}
    no_proposals = [np.zeros((0, 4), np.float32)] * 3
    assert proposal_recall(no_proposals, truths, counts=(5,)) == {5: 0.0}
    with pytest.raises(ValueError, match="one proposal array per image"):
        proposal_recall(proposals[:2], truths)
