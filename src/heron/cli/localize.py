"""`heron localize DATA --boxes FILE`: the class of each image's main object and its box, one network."""

from __future__ import annotations

import argparse

from heron.config import LocalizeConfig

_DEFAULTS = LocalizeConfig()


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "localize", help="classification with localisation: class + box of the main object per image",
        description="Train a two-output model on DATA (class folders or train/valid, as heron train takes) with "
        "boxes from a CSV (file,x1,y1,x2,y2 in pixels) or JSON; the largest box of each image is its target.",
    )
    p.add_argument("data", help="dataset folder")
    p.add_argument("--boxes", required=True, help="CSV or JSON of boxes per image, in pixels")
    p.add_argument("--image-root", help="folder the box file's names start from (default: its folder)")
    p.add_argument("--out", help="run folder (default runs/localize-<data>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace the finished run in --out")
    p.add_argument("--arch", default=_DEFAULTS.arch)
    p.add_argument("--weights", default=_DEFAULTS.weights, help="'imagenet', a weights file, or 'none'")
    p.add_argument("--size", type=int, nargs="+", metavar="PX", help="input size (images are resized whole)")
    p.add_argument("--epochs", type=int, default=_DEFAULTS.epochs)
    p.add_argument("--lr", type=float, default=_DEFAULTS.lr)
    p.add_argument("--box-weight", type=float, default=_DEFAULTS.box_weight,
                   help="loss = W * MSE(box as fractions of the image) + cross-entropy (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size)
    p.add_argument("--valid-pct", type=float, default=_DEFAULTS.valid_pct)
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    p.add_argument("--cache-dir", help="feature cache folder (default ~/.cache/heron/features)")
    p.add_argument("--workers", type=int)
    p.add_argument("--engine", choices=("auto", "torch", "openvino", "onnxruntime"), default=_DEFAULTS.engine)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_localize)


def run_localize(args: argparse.Namespace) -> int:
    from heron.tasks.localize import localize

    values = {k: v for k, v in vars(args).items() if k in LocalizeConfig.__dataclass_fields__}
    if values.get("weights") == "none":
        values["weights"] = None
    result = localize(LocalizeConfig(**values))
    print(result.path)
    return 0
