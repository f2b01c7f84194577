"""Peak memory of `heron train` does not grow with the dataset.

Writes two synthetic photo folders (N and 8N JPEGs, 4 classes), runs a cold
`heron train` on each in its own process under `/usr/bin/time -v`, and prints
the peak resident set size of both and their ratio. Features stream through
the memory-mapped cache and batches, so the ratio should stay near 1.

    .venv/bin/python benchmarks/memory.py [--images 500] [--factor 8]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def write_folder(root: Path, count: int, seed: int = 0) -> Path:
    """`count` 96x96 JPEGs in 4 class folders, each class a dominant colour plus noise."""
    rng = np.random.default_rng(seed)
    colours = np.array([[200, 40, 40], [40, 180, 60], [40, 60, 200], [210, 200, 40]], dtype=np.float32)
    for i in range(count):
        label = i % 4
        pixels = colours[label] + rng.normal(0, 50, size=(96, 96, 3))
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i:06d}.jpg", quality=85)
    return root


def peak_rss_mb(data: Path, work: Path) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one cold `heron train` on `data`."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "heron.cli", "train", str(data), "--size", "64",
           "--epochs", "3", "--quiet", "--out", str(work / f"run-{data.name}"), "--cache-dir", str(work / f"cache-{data.name}")]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time .*: (\S+)", done.stderr).group(1)
    minutes, seconds = wall.split(":")[-2:]
    return rss / 1024, int(minutes) * 60 + float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--factor", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="heron-mem-"))
    small = write_folder(work / "small", args.images)
    large = write_folder(work / "large", args.images * args.factor, seed=1)
    rss_small, t_small = peak_rss_mb(small, work)
    rss_large, t_large = peak_rss_mb(large, work)
    print(f"{args.images:>7} images: peak RSS {rss_small:7.1f} MiB  ({t_small:.1f} s)")
    print(f"{args.images * args.factor:>7} images: peak RSS {rss_large:7.1f} MiB  ({t_large:.1f} s)")
    print(f"ratio large / small peak RSS: {rss_large / rss_small:.2f}x for {args.factor}x the images")


if __name__ == "__main__":
    main()
