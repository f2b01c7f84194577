"""Forward speed of heron's model zoo vs torchvision's same models, same weights, same run.

Each torchvision model is built with random weights and its state dict is
loaded into heron's model through `load_torchvision`, so both compute the
same function (the script checks the logits agree). Both run in eval mode
under `torch.inference_mode()`, NCHW float32, batch 8 at 224x224, on the same
threads; timings alternate between the two so load on the machine hits both
alike. Target: heron / torchvision >= 0.95.

    .venv/bin/python benchmarks/zoo.py [--models resnet50 mobilenet_v2] [--repeats 10] [--threads N]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine, parse_timing_args, timing_parser  # noqa: E402

from heron.models import build, load_torchvision  # noqa: E402


def paired_seconds(fns: list, repeats: int, warmup: int = 2) -> list[float]:
    """Median wall time of each function, timing them in turn inside every repeat."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in times]


def compare(name: str, x: torch.Tensor, repeats: int) -> float:
    """Print images/s for torchvision's and heron's `name`; return heron / torchvision."""
    theirs = torchvision.models.get_model(name, weights=None).eval()
    ours = load_torchvision(build(name), theirs.state_dict()).eval()

    def run(model):
        def forward():
            with torch.inference_mode():
                return model(x)
        return forward

    with torch.inference_mode():
        diff = (theirs(x) - ours(x)).abs().max().item()
    t_theirs, t_ours = paired_seconds([run(theirs), run(ours)], repeats)
    ips_theirs, ips_ours = x.shape[0] / t_theirs, x.shape[0] / t_ours
    ratio = ips_ours / ips_theirs
    print(f"{name:14s} torchvision {ips_theirs:7.1f} img/s   heron {ips_ours:7.1f} img/s   "
          f"ratio {ratio:.3f}   max |logit diff| {diff:.1e}")
    return ratio


def main() -> None:
    parser = timing_parser(__doc__, repeats=10)
    parser.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v2"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    args = parse_timing_args(parser)
    torch.manual_seed(0)
    x = torch.rand(args.batch_size, 3, args.size, args.size)
    print(f"machine: {machine()}; batch {args.batch_size} at {args.size}x{args.size}, eval, inference_mode")
    ratios = [compare(name, x, args.repeats) for name in args.models]
    print(f"lowest ratio heron / torchvision: {min(ratios):.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
