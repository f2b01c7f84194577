"""`heron localize DATA --boxes FILE`: the class of each image's main object and its box, one network."""

from __future__ import annotations

import argparse

from heron.cli._map_flags import add_run_flags, add_trunk_flags
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
    add_trunk_flags(p, _DEFAULTS)
    p.add_argument("--epochs", type=int, default=_DEFAULTS.epochs)
    p.add_argument("--lr", type=float, default=_DEFAULTS.lr)
    p.add_argument("--box-weight", type=float, default=_DEFAULTS.box_weight,
                   help="loss = CE + BCE(p_c) + W * MSE(box as fractions, where there is one) (default %(default)s)")
    add_run_flags(p, _DEFAULTS)
    p.set_defaults(func=run_localize)


def run_localize(args: argparse.Namespace) -> int:
    from heron.tasks.localize import localize

    values = {k: v for k, v in vars(args).items() if k in LocalizeConfig.__dataclass_fields__}
    if values.get("weights") == "none":
        values["weights"] = None
    result = localize(LocalizeConfig(**values))
    print(result.path)
    return 0
