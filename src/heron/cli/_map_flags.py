"""Flags shared by the commands that train a head on cached whole-image maps (localize, landmarks)."""

from __future__ import annotations

import argparse

ENGINES = ("auto", "torch", "openvino", "onnxruntime")


def add_trunk_flags(p: argparse.ArgumentParser, defaults) -> None:
    """--out --overwrite --arch --weights --size: where the run goes and which trunk sees the images."""
    p.add_argument("--out", help=f"run folder (default runs/{p.prog.split()[-1]}-<data>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace the finished run in --out")
    p.add_argument("--arch", default=defaults.arch)
    p.add_argument("--weights", default=defaults.weights, help="'imagenet', a weights file, or 'none'")
    p.add_argument("--size", type=int, nargs="+", metavar="PX", help="input size (images are resized whole)")


def add_run_flags(p: argparse.ArgumentParser, defaults) -> None:
    """--batch-size --valid-pct --seed --cache-dir --workers --engine --quiet."""
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--valid-pct", type=float, default=defaults.valid_pct)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--cache-dir", help="feature cache folder (default ~/.cache/heron/features)")
    p.add_argument("--workers", type=int)
    p.add_argument("--engine", choices=ENGINES, default=defaults.engine)
    p.add_argument("--quiet", action="store_true")
