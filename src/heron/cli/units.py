"""`heron units RUN|ARCH --layer NAME --data DIR -o grid.png`: the image patches each unit responds to most.

RUN is a `heron train` run folder (its trunk and preprocessing), ARCH a zoo
name (pretrained weights by default: `efficientnet_lite0` works offline).
One streaming pass over the folder (`heron.interpret.units.top_patches`)
finds, for the chosen units of the layer (default: the 9 most active), the
`--k` receptive-field crops that activate each most; the grid has one row
per unit. `--list-layers` prints the layer names with their receptive fields.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from heron.errors import DataError, ModelError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "units", help="the image patches that activate a layer's units most (what the network learnt)",
        description="For units of a layer (default: the 9 most active), find the image patches (receptive-field "
        "crops) that activate each most, in one pass over a folder, and draw them as a grid.",
    )
    p.add_argument("source", metavar="RUN|ARCH", help="a run folder from `heron train`, or a zoo name (efficientnet_lite0)")
    p.add_argument("--layer", metavar="NAME", help="layer (module path) to look at, e.g. body.3; see --list-layers")
    p.add_argument("--data", metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("-o", "--out", metavar="PNG", help="where to write the grid figure")
    p.add_argument("--units", nargs="+", type=int, metavar="U", help="units (channels) to show (default: the 9 most active)")
    p.add_argument("--k", type=int, default=9, help="patches per unit (default %(default)s)")
    p.add_argument("--per-image", action="store_true",
                   help="at most one patch per image and unit (its best position), so one photo cannot fill a row")
    p.add_argument("--size", type=int, metavar="PX", help="network input size (default: the weights' own, 224)")
    p.add_argument("--weights", default="imagenet", help="for an ARCH: 'imagenet', 'none' (random) or a weights file")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, metavar="N", help="decode workers (default: one per core)")
    p.add_argument("--list-layers", action="store_true", help="print the layer names with their receptive fields")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from heron.models.receptive import receptive_fields

    model, pre = _load(args.source, args.weights, args.size)
    fields = receptive_fields(model, pre.size)
    if args.list_layers:
        _print_layers(model, fields)
        return 0
    _check_args(args, model, fields)
    return _draw(args, model, pre, fields[args.layer])


def _load(source: str, weights: str, size: int | None):
    """The trunk to look into (its layer names are the zoo's) and the preprocessing it takes."""
    from dataclasses import replace

    from heron.data.transforms import Preprocessing, as_size
    from heron.models import build

    path = Path(source)
    if path.is_dir():
        from heron.tasks.classify import load_run

        loaded = load_run(path)
        pre = loaded.pre if size is None else replace(loaded.pre, size=as_size(size))
        return loaded.model.backbone.eval(), pre
    if "/" in source or path.suffix:
        raise DataError(f"{source}: no such run folder; give a `heron train` run folder or a zoo name")
    model = build(source, weights=None if weights == "none" else weights, include_top=False)
    return model.eval(), Preprocessing.from_spec(model.pretrained_cfg, size)


def _print_layers(model, fields) -> None:
    """One line per layer with a spatial map: name, type, units x map, receptive field."""
    from torch import nn

    modules = dict(model.named_modules())
    rows = [(name, type(modules[name]).__name__, f"{f.channels}x{f.map_size[0]}x{f.map_size[1]}", f.describe())
            for name, f in fields.items() if not isinstance(modules[name], nn.Identity)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])


def _check_args(args: argparse.Namespace, model, fields) -> None:
    """What the pass needs, each as one line naming the flag."""
    listing = f"run `heron units {args.source} --list-layers` to see the layer names"
    missing = [flag for flag, value in (("--layer", args.layer), ("--data", args.data), ("-o", args.out)) if not value]
    if missing:
        raise ModelError(f"give {', '.join(missing)} (or --list-layers); {listing}")
    if args.layer not in fields:
        known = args.layer in dict(model.named_modules())
        what = "has no spatial map" if known else "is not a layer"
        raise ModelError(f"{args.layer!r} {what} of {args.source}; {listing}")
    if args.k < 1 or args.batch_size < 1:
        raise ModelError(f"--k {args.k} --batch-size {args.batch_size}: both must be 1 or more")


def _draw(args: argparse.Namespace, model, pre, field) -> int:
    """The pass, the crops and the figure; says what it wrote and how long it took."""
    import torch
    from tqdm.auto import tqdm

    from heron.data.images import find_images
    from heron.data.loader import file_loader
    from heron.data.transforms import eval_transform
    from heron.interpret.units import crop_patches, normalizer, plot_unit_grid, top_patches

    started = time.time()
    files = find_images(args.data)
    if not files:
        raise DataError(f"{args.data}: no image files in this folder; give a folder of images")
    dataset, loader, plan = file_loader(files, eval_transform(pre), args.batch_size, args.workers,
                                        pre.decode_min_size())
    torch.set_num_threads(plan.threads)
    batches = tqdm(loader, unit="batch", leave=False, disable=None)
    result = top_patches(model, args.layer, batches, args.units, args.k, normalizer(pre.mean, pre.std),
                         per_image=args.per_image)
    plot_unit_grid(result, crop_patches(result, dataset, field), field, args.out, label=Path(args.source).name)
    for message in result.errors:
        print(f"heron: warning: skipped {message}", file=sys.stderr)
    units = " ".join(str(u) for u in result.units)
    print(f"{args.out}: layer {args.layer} ({field.describe()}), units {units}, "
          f"{result.images} images, {time.time() - started:.1f}s")
    return 0
