"""RoI max pooling against torchvision.ops.roi_pool, and its gradient against autograd through torchvision's."""

import torch
from torchvision.ops import roi_pool as tv_roi_pool

from heron.ops.roi import roi_pool


def _rois(k, seed, size=(64, 80), images=2, spill=10.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(k, 2, generator=g) * torch.tensor([size[1], size[0]]) - spill / 2
    wh = torch.rand(k, 2, generator=g) * 40 + 0.3
    n = torch.randint(0, images, (k, 1), generator=g).float()
    return torch.cat([n, xy, xy + wh], 1)  # some boxes run past the image, some are under a cell


def test_roi_pool_equals_torchvision_at_several_scales_and_sizes():
    g = torch.Generator().manual_seed(0)
    for scale, output in ((1 / 8, 7), (1 / 16, (3, 5)), (0.25, 2), (1.0, 4)):
        features = torch.randn(2, 6, int(64 * scale) + 1, int(80 * scale) + 1, generator=g)
        rois = _rois(60, int(scale * 100))
        torch.testing.assert_close(roi_pool(features, rois, output, scale), tv_roi_pool(features, rois, output, scale),
                                   rtol=0, atol=0)


def test_boxes_outside_the_map_pool_to_zero_and_no_boxes_is_empty():
    features = torch.randn(1, 3, 8, 8)
    far = torch.tensor([[0.0, 200.0, 200.0, 260.0, 240.0]])
    torch.testing.assert_close(roi_pool(features, far, 2, 1 / 4), tv_roi_pool(features, far, 2, 1 / 4))
    assert roi_pool(features, far, 2, 1 / 4).abs().sum() == 0
    assert roi_pool(features, torch.zeros(0, 5), 7).shape == (0, 3, 7, 7)


def test_gradient_flows_to_the_maxima_like_torchvisions():
    base = torch.randn(2, 4, 10, 12)
    rois = _rois(20, 3, size=(40, 48))
    ours, theirs = base.clone().requires_grad_(), base.clone().requires_grad_()
    weights = torch.randn(20, 4, 3, 3)
    (roi_pool(ours, rois, 3, 0.25) * weights).sum().backward()
    (tv_roi_pool(theirs, rois, 3, 0.25) * weights).sum().backward()
    torch.testing.assert_close(ours.grad, theirs.grad)


def test_many_boxes_on_a_fine_map_touching_and_crossing_the_border_equal_torchvisions():
    g = torch.Generator().manual_seed(5)
    features = torch.randn(3, 8, 26, 26, generator=g)
    edges = torch.tensor([[0, 0.0, 0.0, 416.0, 416.0], [1, 400.0, 0.0, 416.0, 16.0], [2, -30.0, 380.0, 20.0, 430.0],
                          [0, 415.0, 415.0, 416.0, 416.0], [1, 0.0, 200.0, 1.0, 201.0]])
    rois = torch.cat([edges, _rois(500, 9, size=(416, 416), images=3, spill=60.0) * torch.tensor([1, 1, 1, 4, 4.0])])
    for output in (7, (2, 3)):
        torch.testing.assert_close(roi_pool(features, rois, output, 1 / 16),
                                   tv_roi_pool(features, rois, output, 1 / 16), rtol=0, atol=0)
