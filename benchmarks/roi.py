"""RoI max pooling: heron.ops.roi.roi_pool vs torchvision.ops.roi_pool (its compiled kernel), forward and backward.

Fast R-CNN's shape: a batch of 16 maps of 256 channels (13 x 13 at stride 32,
26 x 26 at stride 16 for a 416 px input), 64 boxes per image pooled to 7 x 7,
then the gradient of their sum. The outputs and gradients are checked equal.

    .venv/bin/python benchmarks/roi.py [--repeats 5] [--threads N]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torchvision.ops import roi_pool as tv_roi_pool

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine, median_seconds, parse_timing_args, timing_parser  # noqa: E402

from heron.ops.roi import roi_pool  # noqa: E402


def boxes(images: int, per_image: int, side: float = 416.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    k = images * per_image
    xy = torch.rand(k, 2, generator=g) * (side - 40)
    wh = torch.rand(k, 2, generator=g) * 150 + 10
    index = torch.arange(images).repeat_interleave(per_image)[:, None].float()
    return torch.cat([index, xy, xy + wh], 1)


def timings(pool, features: torch.Tensor, rois: torch.Tensor, scale: float, repeats: int) -> tuple[float, float]:
    x = features.clone().requires_grad_()
    forward = median_seconds(lambda: pool(x, rois, 7, scale), repeats)

    def both():
        pool(x, rois, 7, scale).sum().backward()
        x.grad = None

    return forward, median_seconds(both, repeats) - forward


def main() -> None:
    args = parse_timing_args(timing_parser(__doc__))
    print(f"machine: {machine()}; 16 images x 64 boxes, 256 channels, 7 x 7 bins")
    print(f"{'map':>7}  {'torchvision fwd / bwd':>22}  {'heron fwd / bwd':>18}  {'ratio fwd / bwd':>16}  same")
    rois = boxes(16, 64)
    for side in (13, 26):
        features = torch.randn(16, 256, side, side, generator=torch.Generator().manual_seed(1))
        ours, theirs = features.clone().requires_grad_(), features.clone().requires_grad_()
        roi_pool(ours, rois, 7, side / 416).sum().backward()
        tv_roi_pool(theirs, rois, 7, side / 416).sum().backward()
        same = torch.equal(roi_pool(features, rois, 7, side / 416), tv_roi_pool(features, rois, 7, side / 416)) \
            and torch.equal(ours.grad, theirs.grad)
        tv = timings(tv_roi_pool, features, rois, side / 416, args.repeats)
        hr = timings(roi_pool, features, rois, side / 416, args.repeats)
        print(f"{side:>3}x{side:<3}  {tv[0] * 1e3:>9.1f} / {tv[1] * 1e3:>6.1f} ms  {hr[0] * 1e3:>7.1f} / {hr[1] * 1e3:>6.1f} ms"
              f"  {hr[0] / tv[0]:>6.2f}x / {hr[1] / tv[1]:>5.2f}x  {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
