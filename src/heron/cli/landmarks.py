"""`heron landmarks DATA --points FILE`: is the object there, and where are its K landmarks, one network.

`heron landmarks --demo` writes the synthetic triangles (3 landmarks each)
to a temporary folder and trains on them.
"""

from __future__ import annotations

import argparse

from heron.cli._map_flags import add_run_flags, add_trunk_flags
from heron.config import LandmarksConfig

_DEFAULTS = LandmarksConfig()
# Lite0 on the triangles: PCK@0.1 0.53 from 200 images, 0.86 from 600 (~30 s of training on a CPU)
DEMO_IMAGES = 600


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "landmarks", help="landmark detection: object present? and its K points",
        description="Train a presence + K points model on DATA (a folder of images, or train/ and valid/) with "
        "points from a CSV (file,x1,y1,...,xK,yK in pixels; an empty row or an image not in it: no object). "
        "--demo trains on synthetic triangles instead.",
    )
    p.add_argument("data", nargs="?", help="folder of images (or train/ and valid/ folders)")
    p.add_argument("--points", help="CSV of file,x1,y1,...,xK,yK in pixels")
    p.add_argument("--demo", action="store_true", help="train on 600 synthetic triangles written to a temporary folder")
    p.add_argument("--image-root", help="folder the CSV's names start from (default: its folder)")
    add_trunk_flags(p, _DEFAULTS)
    p.add_argument("--epochs", type=int, default=_DEFAULTS.epochs)
    p.add_argument("--lr", type=float, default=_DEFAULTS.lr)
    p.add_argument("--point-weight", type=float, default=_DEFAULTS.point_weight,
                   help="loss = BCE(presence) + W * p_c * MSE(points as fractions of the image) "
                   "(default %(default)s)")
    add_run_flags(p, _DEFAULTS)
    p.set_defaults(func=run_landmarks)


def _config(args: argparse.Namespace, **overrides) -> LandmarksConfig:
    values = {k: v for k, v in vars(args).items() if k in LandmarksConfig.__dataclass_fields__}
    values.update(overrides)
    if values.get("weights") == "none":
        values["weights"] = None
    return LandmarksConfig(**values)


def _demo(args: argparse.Namespace) -> int:
    import json
    import tempfile
    from pathlib import Path

    from heron.data.landmarks import write_landmark_shapes
    from heron.tasks.landmarks import landmarks

    with tempfile.TemporaryDirectory(prefix="heron-landmarks-") as tmp:
        data = Path(tmp) / "triangles"
        points = write_landmark_shapes(data, images=DEMO_IMAGES, seed=args.seed)
        result = landmarks(_config(args, data=str(data), points=str(points)))
    print(json.dumps({k: v for k, v in result.metrics.items() if not isinstance(v, dict)}, indent=2))
    print(result.path)
    return 0


def run_landmarks(args: argparse.Namespace) -> int:
    from heron.errors import DataError

    if args.demo:
        return _demo(args)
    if not args.data or not args.points:
        raise DataError("landmarks needs DATA and --points FILE (file,x1,y1,...,xK,yK), or --demo")
    from heron.tasks.landmarks import landmarks

    result = landmarks(_config(args))
    print(result.path)
    return 0
