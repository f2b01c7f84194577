"""Detector inference frames/s at 416x416: heron's YOLO-style detector vs torchvision's SSDlite, same run.

heron: EfficientNet-Lite0 trunk (batch norm folded, channels_last) + the YOLO
head (5 anchors, 3 classes), decoding and class-wise NMS included, in fp32
and in the precision "auto" picks (bf16 where the CPU runs it natively). Baseline:
torchvision's `ssdlite320_mobilenet_v3_large` (random weights; the same work
as trained ones) at the same 416x416 input, its own post-processing included.
Batch 1 (a camera frame at a time) and batch 8.

    .venv/bin/python benchmarks/detect.py [--repeats 5] [--threads N]
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine, median_seconds, parse_timing_args, timing_parser  # noqa: E402

from heron.config import DetectConfig  # noqa: E402
from heron.nn.fuse import fold_batchnorm  # noqa: E402
from heron.tasks.detect.recipe import Detector, _network  # noqa: E402

SIDE = 416


def heron_detector(precision: str = "fp32") -> Detector:
    model, pre = _network(DetectConfig(size=[SIDE]), num_classes=3, num_anchors=5)
    model.backbone = fold_batchnorm(copy.deepcopy(model.backbone))
    anchors = torch.tensor([[30.0, 30.0], [60.0, 45.0], [45.0, 90.0], [120.0, 100.0], [220.0, 200.0]])
    return Detector(model.eval().to(memory_format=torch.channels_last), anchors, ["a", "b", "c"], pre, 0.3, 0.45,
                    precision)


def main() -> None:
    parser = timing_parser(__doc__, repeats=5)
    args = parse_timing_args(parser)
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large

    torch.manual_seed(0)
    from heron.nn.precision import resolve_precision

    ours, fast = heron_detector(), heron_detector(resolve_precision("auto", "cpu"))
    baseline = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4).eval()
    baseline.transform.fixed_size = (SIDE, SIDE)  # run it at 416 too, not its own 320
    print(f"machine: {machine()}")
    print(f"{'batch':>5}  {'heron fp32':>10}  {'heron ' + fast.precision:>10}  {'ssdlite fps':>11}  {'ratios':>13}")
    for batch in (1, 8):
        images = (torch.rand(batch, 3, SIDE, SIDE) * 255).to(torch.uint8).contiguous(memory_format=torch.channels_last)
        sizes = [(SIDE, SIDE)] * batch
        floats = [img.float() / 255 for img in images]
        with torch.inference_mode():
            t_ours = median_seconds(lambda: ours.detect_batch(images.clone(), sizes), args.repeats)
            t_fast = median_seconds(lambda: fast.detect_batch(images.clone(), sizes), args.repeats)
            t_base = median_seconds(lambda: baseline(floats), args.repeats)
        print(f"{batch:>5}  {batch / t_ours:>10.1f}  {batch / t_fast:>10.1f}  {batch / t_base:>11.1f}  "
              f"{t_base / t_ours:>5.2f}x {t_base / t_fast:>5.2f}x")


if __name__ == "__main__":
    main()
