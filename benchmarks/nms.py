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

import sys
from pathlib import Path

import torch
from torchvision.ops import nms as tv_nms

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine, median_seconds, parse_timing_args, timing_parser  # noqa: E402

from heron.data.synthetic import clustered_boxes  # noqa: E402
from heron.ops.boxes import nms  # noqa: E402


def detector_like_boxes(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` xyxy boxes jittered around n/20 objects (8 to 200 px) in a 1280 px square, and `n` distinct scores."""
    return clustered_boxes(n, seed, size=1280.0, per_object=20, sides=(8.0, 200.0), jitter=0.15, shape_jitter=0.2)


def main() -> None:
    parser = timing_parser(__doc__, repeats=5, threads=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parse_timing_args(parser)
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
