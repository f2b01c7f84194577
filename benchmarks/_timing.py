"""Timing helpers shared by the benchmark scripts: warm-up, repeats, median."""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> str:
    """One line describing where the numbers were taken."""
    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}, python {platform.python_version()}")


def timing_parser(doc: str, repeats: int = 5, threads: int | None = None) -> argparse.ArgumentParser:
    """A benchmark's argument parser (described by its docstring's first line) with --repeats and --threads."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=repeats, help="timed runs, median (default %(default)s)")
    parser.add_argument("--threads", type=int, default=threads, help="torch threads (default: torch's own)")
    return parser


def parse_timing_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line and set torch's thread count when --threads is given."""
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args
