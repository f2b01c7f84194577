"""Greedy NMS: heron.ops.boxes.nms against torchvision.ops.nms on CPU, same boxes, same run.

Boxes are clustered like a detector's raw output (many candidates around each
object, sizes from small to large, in a 1280 x 1280 image), scores distinct
and seeded. For each size the script checks that both keep the same indices
in the same order, then prints the median time of each and the ratio
(heron / torchvision; below 1 means heron is faster). torchvision's CPU kernel
is a single-threaded loop, so heron runs on `--threads` (default 1) too.

    .venv/bin/python benchmarks/nms.py [--sizes 1000 10000 50000] [--threshold 0.5] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torchvision.ops import nms as tv_nms

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine, median_seconds  # noqa: E402

from heron.ops.boxes import nms  # noqa: E402


def detector_like_boxes(n: int, seed: int = 0, size: float = 1280.0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` xyxy boxes jittered around n/20 objects (8 to 200 px), and `n` distinct scores."""
    g = torch.Generator().manual_seed(seed)
    objects = max(1, n // 20)
    centres = torch.rand(objects, 2, generator=g) * size
    sizes = torch.rand(objects, 2, generator=g) * 192 + 8
    which = torch.randint(0, objects, (n,), generator=g)
    ctr = centres[which] + torch.randn(n, 2, generator=g) * sizes[which] * 0.15
    wh = sizes[which] * (1 + 0.2 * torch.randn(n, 2, generator=g)).clamp(min=0.2)
    scores = (torch.randperm(n, generator=g).float() + 1) / n
    return torch.cat([ctr - wh / 2, ctr + wh / 2], dim=1), scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine())
    print(f"IoU threshold {args.threshold}, median of {args.repeats} runs")
    print(f"{'boxes':>7} {'kept':>7} {'same':>5} {'torchvision':>12} {'heron':>10} {'ratio':>6}")
    for n in args.sizes:
        boxes, scores = detector_like_boxes(n)
        ours, theirs = nms(boxes, scores, args.threshold), tv_nms(boxes, scores, args.threshold)
        same = torch.equal(ours, theirs)
        t_tv = median_seconds(lambda: tv_nms(boxes, scores, args.threshold), args.repeats)
        t_us = median_seconds(lambda: nms(boxes, scores, args.threshold), args.repeats)
        print(f"{n:>7} {theirs.numel():>7} {'yes' if same else 'NO':>5} {t_tv * 1e3:>10.2f}ms "
              f"{t_us * 1e3:>8.2f}ms {t_us / t_tv:>5.2f}x")
        if not same:
            raise SystemExit(f"keep sets differ at {n} boxes")


if __name__ == "__main__":
    main()
