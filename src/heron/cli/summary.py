"""`heron summary NAME`: the layer table of a registered model; `heron summary --list`: the names.

Builds the model without weights (nothing is downloaded or allocated: shapes
only, on PyTorch's meta device) and prints `heron.models.summary` for one
input of `--in-chans` x `--size`.
"""

from __future__ import annotations

import argparse

from heron.errors import ModelError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "summary",
        help="layer table of a model: output shapes, parameters, MACs",
        description="Print a Keras-style table of a registered model (random weights, nothing downloaded): "
        "each layer's output shape, parameters and multiply-accumulates, with totals.",
    )
    parser.add_argument("name", nargs="?", help="registered model name, e.g. vgg16 (see --list)")
    parser.add_argument(
        "--list", nargs="?", const="*", metavar="PATTERN", dest="pattern",
        help="list registered model names, optionally those matching a shell pattern like 'res*'",
    )  # fmt: skip
    parser.add_argument(
        "--size", nargs=2, type=int, metavar=("H", "W"), help="input height and width (default 224 224)"
    )
    parser.add_argument("--in-chans", type=int, default=3, metavar="C", help="input channels (default 3)")
    parser.add_argument("--num-classes", type=int, default=1000, metavar="N", help="classes of the head (default 1000)")
    parser.add_argument(
        "--depth", type=int, metavar="D", help="group layers D names deep, e.g. 2 for one row per stage"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from heron.models import build, names, summary

    if args.pattern is not None:
        found = names(args.pattern)
        if not found:
            raise ModelError(f"no registered model matches {args.pattern!r}; run `heron summary --list` for all names")
        print("\n".join(found))
        return 0
    if args.name is None:
        raise ModelError("give a model name (`heron summary vgg16`) or --list to see the names")
    height, width = args.size or (224, 224)
    if min(height, width, args.in_chans) < 1 or (args.depth is not None and args.depth < 1):
        given = f"--size {height} {width} --in-chans {args.in_chans} --depth {args.depth}"
        raise ModelError(f"{given}: all must be positive")
    settings = dict(num_classes=args.num_classes, in_chans=args.in_chans)
    size = (args.in_chans, height, width)
    with torch.device("meta"):  # shapes only: no memory for weights, no arithmetic
        model = build(args.name, **settings)
    try:
        table = summary(model, size, depth=args.depth)
    except ModelError:  # a layer without a shape-only kernel: run it for real (or fail with the real message)
        table = summary(build(args.name, **settings), size, depth=args.depth)
    print(table)
    return 0
