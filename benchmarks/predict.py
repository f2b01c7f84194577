"""Inference throughput: heron's predict path vs a plain eager loop, same model, same run.

heron: batch norm folded into the convolutions, channels_last memory, inference
mode. Baseline: the same EfficientNet-Lite0 weights, NCHW float32, eager,
under torch.no_grad(). Batch 32 at 224x224; decoding is not included.

    .venv/bin/python benchmarks/predict.py [--batches 5] [--threads N]
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine, median_seconds, parse_timing_args, timing_parser  # noqa: E402

from heron.models import build  # noqa: E402
from heron.nn.fuse import fold_batchnorm  # noqa: E402


def main() -> None:
    parser = timing_parser(__doc__, repeats=5)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parse_timing_args(parser)

    torch.manual_seed(0)
    x = torch.rand(args.batch_size, 3, 224, 224)
    baseline = build("efficientnet_lite0", weights="imagenet").eval()
    ours = fold_batchnorm(copy.deepcopy(baseline)).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def run_baseline():
        with torch.no_grad():
            return baseline(x)

    def run_heron():
        with torch.inference_mode():
            return ours(x_cl)

    with torch.inference_mode():
        diff = (run_baseline() - run_heron()).abs().max().item()
    t_base = median_seconds(run_baseline, args.repeats)
    t_ours = median_seconds(run_heron, args.repeats)
    ips_base, ips_ours = args.batch_size / t_base, args.batch_size / t_ours
    print(f"machine: {machine()}")
    print(f"baseline (eager NCHW fp32, no_grad): {ips_base:7.1f} img/s")
    print(f"heron (folded BN, channels_last, inference_mode): {ips_ours:7.1f} img/s")
    print(f"max |logit difference|: {diff:.2e}")
    print(f"ratio heron / baseline: {ips_ours / ips_base:.2f}x")


if __name__ == "__main__":
    main()
