"""Make the README's style-transfer gallery with `heron style` itself.

Content photos are scikit-image's bundled ones; no painting ships with the
dependencies, so each style image is one of those photos painted in brush
strokes by `heron.tasks.style.painting.paint_strokes`. Every result is made by
the `heron style` command this script prints, then put beside its content and
style in one panel, docs/style_<name>.png.

    python docs/make_style_gallery.py [--size 384] [--work /tmp/heron-style]
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

import numpy as np
from PIL import Image

from heron.cli import main as heron

DOCS = Path(__file__).resolve().parent

# (panel name, content photo, style photo, extra heron style flags)
GALLERY = (
    ("cat_night", "chelsea", "rocket", []),
    ("coffee_mosaic", "coffee", "immunohistochemistry", []),
    ("astronaut_mosaic_colour", "astronaut", "immunohistochemistry", ["--preserve-color", "--style-weight", "1e7"]),
)


def _photo(name: str) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(getattr(data, name)()[..., :3])


def _write_inputs(work: Path) -> None:
    """The content photos and the painted style images as PNGs in `work`."""
    from heron.tasks.style.painting import paint_strokes

    work.mkdir(parents=True, exist_ok=True)
    for _, content, style, _ in GALLERY:
        Image.fromarray(_photo(content)).save(work / f"{content}.png")
        painted = work / f"{style}_strokes.png"
        if not painted.exists():
            photo = Image.fromarray(_photo(style))
            photo = photo.resize((400, round(400 * photo.height / photo.width)), Image.LANCZOS)
            Image.fromarray(paint_strokes(np.asarray(photo))).save(painted)


def _panel(paths: list[Path], out: Path, height: int = 256) -> None:
    """The images side by side at one height, white gaps between them."""
    images = [Image.open(p).convert("RGB") for p in paths]
    images = [im.resize((round(im.width * height / im.height), height), Image.LANCZOS) for im in images]
    gap = 8
    panel = Image.new("RGB", (sum(im.width for im in images) + gap * (len(images) - 1), height), "white")
    x = 0
    for im in images:
        panel.paste(im, (x, 0))
        x += im.width + gap
    panel.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--work", type=Path, default=Path("/tmp/heron-style"))
    parser.add_argument("--only", nargs="+", metavar="NAME", help="make only these panels")
    args = parser.parse_args()
    _write_inputs(args.work)
    for name, content, style, flags in GALLERY:
        if args.only and name not in args.only:
            continue
        result = args.work / f"{name}.png"
        argv = ["style", str(args.work / f"{content}.png"), str(args.work / f"{style}_strokes.png"),
                "-o", str(result), "--size", str(args.size), "--steps", str(args.steps), "--quiet", *flags]
        print("heron " + shlex.join(argv), flush=True)
        start = time.perf_counter()
        if heron(argv) != 0:
            raise SystemExit(f"heron style failed for {name}")
        print(f"  {time.perf_counter() - start:.0f} s", flush=True)
        _panel([args.work / f"{content}.png", args.work / f"{style}_strokes.png", result], DOCS / f"style_{name}.png")


if __name__ == "__main__":
    main()
