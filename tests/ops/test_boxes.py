"""heron.ops.boxes against torchvision.ops."""

import torch
from torchvision.ops import box_area as tv_area
from torchvision.ops import box_iou as tv_iou

from heron.ops.boxes import box_area, box_iou, paired_iou


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
