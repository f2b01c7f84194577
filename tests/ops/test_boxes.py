"""heron.ops.boxes against torchvision.ops."""

import pytest
import torch
from torchvision.ops import box_area as tv_area
from torchvision.ops import box_convert as tv_convert
from torchvision.ops import box_iou as tv_iou
from torchvision.ops import clip_boxes_to_image as tv_clip
from torchvision.ops import remove_small_boxes as tv_remove_small

from heron.ops.boxes import box_area, box_convert, box_iou, clip_boxes, paired_iou, remove_small_boxes


def _boxes(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 50 + 0.5
    return torch.cat([xy, xy + wh], dim=1)


def test_iou_and_area_match_torchvision():
    a, b = _boxes(37, 0), _boxes(23, 1)
    torch.testing.assert_close(box_area(a), tv_area(a))
    torch.testing.assert_close(box_iou(a, b), tv_iou(a, b))
    torch.testing.assert_close(paired_iou(a, b[:1].expand(37, 4)), tv_iou(a, b[:1])[:, 0])


def test_degenerate_boxes_give_zero_not_nan():
    empty = torch.tensor([[5.0, 5.0, 5.0, 9.0], [0.0, 0.0, 0.0, 0.0]])
    assert torch.equal(box_iou(empty, empty), torch.zeros(2, 2))
    assert torch.equal(paired_iou(empty, empty), torch.zeros(2))
    inverted = torch.tensor([[10.0, 10.0, 0.0, 0.0]])
    assert box_area(inverted).item() == 0.0


FORMATS = ["xyxy", "xywh", "cxcywh"]


@pytest.mark.parametrize("in_fmt", FORMATS)
@pytest.mark.parametrize("out_fmt", FORMATS)
def test_box_convert_matches_torchvision(in_fmt, out_fmt):
    boxes = tv_convert(_boxes(31, 2), "xyxy", in_fmt)
    ours = box_convert(boxes, in_fmt, out_fmt)
    torch.testing.assert_close(ours, tv_convert(boxes, in_fmt, out_fmt))
    torch.testing.assert_close(box_convert(ours, out_fmt, in_fmt), boxes)  # round trip
    assert ours.data_ptr() != boxes.data_ptr()


def test_box_convert_known_values_and_errors():
    xyxy = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    assert box_convert(xyxy, "xyxy", "xywh").tolist() == [[10.0, 20.0, 20.0, 40.0]]
    assert box_convert(xyxy, "xyxy", "cxcywh").tolist() == [[20.0, 40.0, 20.0, 40.0]]
    assert box_convert(torch.zeros(0, 4), "xywh", "cxcywh").shape == (0, 4)
    with pytest.raises(ValueError, match="unknown box format 'yolo'"):
        box_convert(xyxy, "yolo", "xyxy")


def test_clip_and_remove_small_match_torchvision():
    boxes = _boxes(40, 3) - 20  # some outside the 90 x 120 image on every side
    torch.testing.assert_close(clip_boxes(boxes, (90, 120)), tv_clip(boxes, (90, 120)))
    for min_size in (0.5, 10.0, 30.0):
        assert torch.equal(remove_small_boxes(boxes, min_size), tv_remove_small(boxes, min_size))


def test_box_deltas_round_trip_and_equal_torchvisions_box_coder():
    from torchvision.models.detection._utils import BoxCoder

    from heron.ops.boxes import DELTA_WEIGHTS, decode_deltas, encode_deltas

    g = torch.Generator().manual_seed(3)
    xy = torch.rand(50, 2, generator=g) * 300
    proposals = torch.cat([xy, xy + 5 + torch.rand(50, 2, generator=g) * 100], 1)
    xy = xy + torch.randn(50, 2, generator=g) * 10
    targets = torch.cat([xy, xy + 5 + torch.rand(50, 2, generator=g) * 100], 1)
    deltas = encode_deltas(proposals, targets)
    torch.testing.assert_close(decode_deltas(deltas, proposals), targets, rtol=0, atol=1e-3)
    coder = BoxCoder(DELTA_WEIGHTS)
    torch.testing.assert_close(deltas, coder.encode_single(targets, proposals), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(decode_deltas(deltas, proposals), coder.decode_single(deltas, proposals),
                               rtol=1e-5, atol=1e-3)
    assert torch.isfinite(decode_deltas(torch.full((1, 4), 1e4), proposals[:1])).all()  # clipped, no overflow
