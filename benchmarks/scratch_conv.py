"""numpy im2col convolution vs the naive loop version vs torch.nn.functional.conv2d, same inputs.

im2col turns every window into a row so the whole convolution is one matrix
product; the naive version loops over images, filters and output pixels. All
three run on the same arrays (float64 by default, --dtype float32 for torch's
fast path), with numpy's BLAS and torch limited to
the same thread count. The backward pass (im2col's hand-written gradients vs
torch autograd) is timed too.

    .venv/bin/python benchmarks/scratch_conv.py [--batch 8 --channels 3 --filters 16 --size 32]
                                                [--threads 1 --dtype float64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine, median_seconds  # noqa: E402

from heron.scratch.conv import conv2d, conv2d_backward, conv2d_forward, conv2d_naive  # noqa: E402


def _torch_backward_seconds(xt, wt, bt, dout_t, conv, repeats: int) -> float:
    """Median time of autograd's backward pass alone (a fresh untimed forward before each)."""
    times = []
    for _ in range(repeats + 1):
        out = F.conv2d(xt, wt, bt, **conv)
        start = time.perf_counter()
        torch.autograd.grad(out, (xt, wt, bt), dout_t)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])  # the first run is a warm-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--padding", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="threads for numpy's BLAS and torch alike")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    dtype = np.dtype(args.dtype)
    x = rng.standard_normal((args.batch, args.channels, args.size, args.size)).astype(dtype)  # (N, C, H, W)
    w = rng.standard_normal((args.filters, args.channels, args.kernel, args.kernel)).astype(dtype)  # (F, C, k, k)
    b = rng.standard_normal(args.filters).astype(dtype)
    conv = dict(stride=args.stride, padding=args.padding)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))

    with threadpool_limits(limits=args.threads, user_api="blas"):
        out_naive = conv2d_naive(x, w, b, **conv)
        out_im2col = conv2d(x, w, b, **conv)
        with torch.no_grad():
            out_torch = F.conv2d(xt, wt, bt, **conv).numpy()
        t_naive = median_seconds(lambda: conv2d_naive(x, w, b, **conv), repeats=max(1, args.repeats // 2), warmup=0)
        t_im2col = median_seconds(lambda: conv2d(x, w, b, **conv), args.repeats)

        def torch_forward():
            with torch.no_grad():
                return F.conv2d(xt, wt, bt, **conv)

        t_torch = median_seconds(torch_forward, args.repeats)

        out, cache = conv2d_forward(x, w, b, **conv)
        dout = rng.standard_normal(out.shape).astype(dtype)
        t_back = median_seconds(lambda: conv2d_backward(dout, cache), args.repeats)

        t_torch_back = _torch_backward_seconds(xt, wt, bt, torch.tensor(dout), conv, args.repeats)

    print(f"machine: {machine()}, numpy {np.__version__}, BLAS threads {args.threads}")
    print(f"input {x.shape}, weight {w.shape}, stride {args.stride}, padding {args.padding}, {args.dtype}")
    print(f"max |im2col - naive| {np.abs(out_im2col - out_naive).max():.1e}, "
          f"max |im2col - torch| {np.abs(out_im2col - out_torch).max():.1e}")
    print(f"forward  naive loops        {t_naive * 1e3:10.2f} ms")
    print(f"forward  numpy im2col       {t_im2col * 1e3:10.2f} ms")
    print(f"forward  torch conv2d       {t_torch * 1e3:10.2f} ms")
    print(f"backward numpy col2im       {t_back * 1e3:10.2f} ms")
    print(f"backward torch autograd     {t_torch_back * 1e3:10.2f} ms")
    print(f"ratio naive / im2col: {t_naive / t_im2col:8.1f}x   (im2col is this many times faster)")
    print(f"ratio im2col / torch: {t_im2col / t_torch:8.2f}x   (im2col time over torch time; above 1: torch faster)")


if __name__ == "__main__":
    main()
