"""`heron leakage DATA`: does metadata, or a copy across splits, predict the label?

Scans DATA's files (headers, then one small decode per file in workers),
sets each metadata feature's small model beside chance and the image model,
lists cross-split duplicates, writes leakage.json and leakage.html, and ends
with `verdict: none|weak|strong` (exit code 0 whatever the verdict). The
image model's accuracy comes from `--run` (a finished `heron train` run on the
same split), or from a quick default `heron train` into OUT/image_model.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from heron.config import TrainConfig

_DEFAULTS = TrainConfig()


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "leakage", help="find metadata and duplicates that predict the label",
        description="Train small models on metadata alone (size, format, file size, EXIF camera and time, "
        "mean colour), compare each with chance and with the image model, and find duplicates across "
        "the train/valid split. Writes leakage.html and leakage.json; the last line is the verdict.",
    )
    p.add_argument("data", help="dataset folder or CSV file (anything `heron train` takes)")
    p.add_argument("-o", "--out", help="output folder (default runs/leakage-<data>-<time>)")
    p.add_argument("--image-root", metavar="FOLDER", help="folder a CSV's relative paths start from")
    p.add_argument("--run", metavar="RUN", help="a finished `heron train` run on the same data and split: "
                   "its valid accuracy is the image model's (default: train one quickly)")
    p.add_argument("--no-image-model", dest="image_model", action="store_false",
                   help="compare with chance only ('strong' then needs metadata to be nearly perfect)")
    p.add_argument("--no-pixels", dest="pixels", action="store_false",
                   help="headers only: no mean colour and no duplicate search (nothing is decoded)")
    p.add_argument("--valid-pct", type=float, default=_DEFAULTS.valid_pct, help="held out when there is no valid/ folder")
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    p.add_argument("--workers", type=int, help="decoding processes for the pixel pass")
    p.add_argument("--quiet", action="store_true", help="print the verdict line only")
    p.set_defaults(func=run_leakage)


def _out_dir(args: argparse.Namespace) -> Path:
    if args.out:
        return Path(args.out)
    name = Path(args.data).stem or "data"
    return Path("runs") / f"leakage-{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _run_accuracy(run: str) -> float:
    """The valid accuracy a finished `heron train` run recorded in its config.json."""
    from heron.errors import DataError

    path = Path(run) / "config.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        return float(saved["result"]["metrics"]["accuracy"])
    except FileNotFoundError:
        raise DataError(f"{path}: not found; pass the folder of a finished `heron train` run to --run") from None
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{path}: holds no result.metrics.accuracy; is the run finished?") from None


def _train_accuracy(args: argparse.Namespace, out: Path) -> float:
    """Train the default image model on the same split (quietly, no figures); its valid accuracy."""
    from heron.tasks.classify import train

    config = TrainConfig(data=args.data, image_root=args.image_root, out=str(out / "image_model"), overwrite=True,
                         valid_pct=args.valid_pct, seed=args.seed, workers=args.workers, quiet=True, figures="none")
    return float(train(config).metrics["accuracy"])


def _image_model(args: argparse.Namespace, out: Path) -> tuple[float | None, str]:
    """(accuracy, where it came from) by --run, by training, or (None, ...) with --no-image-model."""
    if args.run:
        return _run_accuracy(args.run), f"run {args.run}"
    if not args.image_model:
        return None, ""
    if not args.quiet:
        print(f"training the image model for comparison into {out / 'image_model'} ...", flush=True)
    return _train_accuracy(args, out), f"trained into {out / 'image_model'}"


def run_leakage(args: argparse.Namespace) -> int:
    from heron.data.folders import discover
    from heron.interpret.leakage import check_splits, find_leakage, summary, write_leakage

    data = discover(args.data, valid_pct=args.valid_pct, seed=args.seed, image_root=args.image_root)
    check_splits(data)
    out = _out_dir(args)
    accuracy, source = _image_model(args, out)
    report = find_leakage(data, accuracy, image_source=source, workers=args.workers, pixels=args.pixels,
                          seed=args.seed, progress=not args.quiet)
    written = write_leakage(report, out)
    print(f"verdict: {report.verdict}" if args.quiet else summary(report, written))
    return 0
