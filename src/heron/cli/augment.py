"""The augmentation flags, defined once, and `heron augment-preview DATA`: what training does to one image.

`add_augment_flags(parser)` adds the flags that adjust an `--augment` preset
(`--rotate`, `--vflip`, `--pca-colour`, ...) to any command that augments;
every flag defaults to None, meaning "the preset's value", and
`augment_overrides(args)` returns only the ones given, ready for
`heron.data.augment.preset(name, **overrides)`. `heron augment-preview` draws
one image's augmented copies in a grid, so a user can see what a preset does
before training with it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

# heron.data.augment.PRESETS' names, here because parsing a command line must not import torch
# (tests/data/test_augment.py checks that the two agree).
PRESET_NAMES = ("none", "light", "photo", "strong")

_FLAG_FIELDS = {  # argparse dest -> AugmentSpec field, for the flags that map one to one
    "aug_crop_scale": "crop_scale",
    "aug_hflip": "hflip",
    "aug_vflip": "vflip",
    "aug_rotate": "rotate",
    "aug_shear": "shear",
    "aug_zoom": "zoom",
    "aug_elastic": "elastic",
    "aug_elastic_sigma": "elastic_sigma",
    "aug_brightness": "brightness",
    "aug_contrast": "contrast",
    "aug_saturation": "saturation",
    "aug_hue": "hue",
    "aug_pca_colour": "pca_colour",
}


# ---- flag values ------------------------------------------------------------------------
def _number(text: str, low: float = 0.0, high: float = math.inf, low_open: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (low < value if low_open else low <= value) or not value <= high:
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        raise argparse.ArgumentTypeError(f"{text} must be {bound}" + (f" and <= {high:g}" if high < math.inf else ""))
    return value


def _non_negative(text: str) -> float:
    return _number(text)


def _positive(text: str) -> float:
    return _number(text, low_open=True)


def _factor(text: str) -> float:
    """A jitter factor f in [0, 1]: the image's value is scaled by a factor in [1 - f, 1 + f]."""
    return _number(text, high=1.0)


def _hue(text: str) -> float:
    return _number(text, high=0.5)


def _fraction(text: str) -> float:
    return _number(text, high=1.0, low_open=True)


class _CropScale(argparse.Action):
    """`--crop-scale MIN MAX`: both in (0, 1], MIN <= MAX."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        low, high = values
        if low > high:
            parser.error(f"{option_string}: MIN {low:g} is larger than MAX {high:g}")
        setattr(namespace, self.dest, (low, high))


class _Zoom(argparse.Action):
    """`--zoom Z` (scale 1-Z .. 1+Z) or `--zoom MIN MAX`; 0 turns zoom off."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if len(values) == 1:
            (z,) = values
            if z >= 1:
                parser.error(f"{option_string} {z:g}: one value Z zooms by 1-Z..1+Z, so Z must be below 1")
            setattr(namespace, self.dest, (1.0 - z, 1.0 + z) if z else (1.0, 1.0))
            return
        if len(values) != 2 or not 0 < values[0] <= values[1]:
            parser.error(f"{option_string}: give Z (e.g. 0.1) or MIN MAX with 0 < MIN <= MAX (e.g. 0.9 1.1)")
        setattr(namespace, self.dest, (values[0], values[1]))


# ---- the flags --------------------------------------------------------------------------
def add_augment_flags(parser: argparse.ArgumentParser) -> None:
    """Add the flags that adjust the `--augment` preset (each None unless given) to `parser`.

    The preset itself is `--augment`, which the calling command defines
    (`heron train` has it already). Destinations start with `aug_`, so they
    never collide with a command's own settings.
    """
    group = parser.add_argument_group("augmentation settings (default: the --augment preset's)")
    add = group.add_argument
    add("--crop-scale", dest="aug_crop_scale", nargs=2, type=_fraction, metavar=("MIN", "MAX"), action=_CropScale,
        help="random resized crop keeping MIN..MAX of the image's area, e.g. 0.35 1")
    add("--hflip", dest="aug_hflip", action="store_const", const=True, help="mirror left-right half the time")
    add("--no-hflip", dest="aug_hflip", action="store_const", const=False, help="never mirror left-right")
    add("--vflip", dest="aug_vflip", action="store_const", const=True,
        help="flip upside-down half the time (off in every preset: photos have an up)")
    add("--no-vflip", dest="aug_vflip", action="store_const", const=False, help="never flip upside-down")
    add("--rotate", dest="aug_rotate", type=_non_negative, metavar="DEG", help="rotate by up to +-DEG degrees")
    add("--shear", dest="aug_shear", type=_non_negative, metavar="DEG", help="shear by up to +-DEG degrees")
    add("--zoom", dest="aug_zoom", nargs="+", type=_non_negative, metavar=("Z", "MAX"), action=_Zoom,
        help="zoom by a factor in 1-Z..1+Z (or give MIN MAX); 0: off")
    add("--elastic", dest="aug_elastic", type=_non_negative, metavar="ALPHA",
        help="elastic warping strength (pixels, e.g. 50); 0: off")
    add("--elastic-sigma", dest="aug_elastic_sigma", type=_positive, metavar="SIGMA",
        help="smoothness of the elastic warp (pixels; default 5)")
    add("--colour", "--color", dest="aug_colour", type=_factor, metavar="X",
        help="brightness, contrast and saturation jitter X (each scaled by 1-X..1+X); 0: off")
    for name in ("brightness", "contrast", "saturation"):
        add(f"--{name}", dest=f"aug_{name}", type=_factor, metavar="X", help=f"{name} jitter alone (overrides --colour)")
    add("--hue", dest="aug_hue", type=_hue, metavar="H", help="hue shift up to +-H (at most 0.5)")
    add("--pca-colour", "--pca-color", dest="aug_pca_colour", type=_non_negative, metavar="STD",
        help="AlexNet's PCA colour noise with this std (0.1 in the paper); 0: off")


def augment_overrides(args: argparse.Namespace) -> dict:
    """The AugmentSpec settings the user gave on the command line (nothing for flags left out)."""
    overrides = {}
    colour = getattr(args, "aug_colour", None)
    if colour is not None:
        overrides.update(brightness=colour, contrast=colour, saturation=colour)
    for dest, name in _FLAG_FIELDS.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides[name] = value
    if overrides.get("zoom") == (1.0, 1.0):
        overrides["zoom"] = None
    return overrides


# ---- heron augment-preview --------------------------------------------------------------
def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "augment-preview", help="grid of one image's augmented copies, to see what a preset does",
        description="Draw one image and N augmented copies of it, as training would make them, in a PNG grid. "
        "DATA is a dataset folder (its first training image is used unless --image) or an image file.",
    )
    p.add_argument("data", metavar="DATA", help="dataset folder or image file")
    p.add_argument("-o", "--output", default="augment-preview.png", metavar="PNG",
                   help="grid file to write (default %(default)s)")
    p.add_argument("--augment", choices=PRESET_NAMES, default="photo", help="preset (default %(default)s)")
    p.add_argument("--image", metavar="PATH", help="the image to augment (default: DATA's first training image)")
    p.add_argument("--n", type=_count, default=16, help="augmented copies (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the copies (default %(default)s)")
    p.add_argument("--size", type=_count, default=224, metavar="PX", help="output size (default %(default)s)")
    p.add_argument("--cache-dir", metavar="FOLDER",
                   help="where the dataset's colour statistics are kept for --pca-colour (default ~/.cache/heron)")
    add_augment_flags(p)
    p.set_defaults(func=run_preview)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def run_preview(args: argparse.Namespace) -> int:
    from heron.data.augment import preset

    spec = preset(args.augment, **augment_overrides(args))
    out = Path(args.output)
    if out.is_dir():
        from heron.errors import DataError

        raise DataError(f"{out}: is a folder; give a file name for the grid, e.g. {out / 'augment-preview.png'}")
    print(_write_preview(args, spec, out))
    return 0


def _write_preview(args: argparse.Namespace, spec, out: Path) -> Path:
    """Augment the chosen image `args.n` times and draw the grid at `out`."""
    import torch

    from heron.data.augment import build_augment, load_or_compute_colour_pca
    from heron.data.images import load_image
    from heron.data.transforms import Preprocessing

    image, dataset = _preview_image(Path(args.data), args.image)
    pre = Preprocessing(size=(args.size, args.size))  # EfficientNet-Lite0's: crop 0.875, bilinear
    pca = load_or_compute_colour_pca(dataset, _cache_root(args.cache_dir)) if spec.pca_colour else None
    original = load_image(image, min_size=pre.decode_min_size())  # (3, H, W) as training decodes it
    augment = build_augment(spec, pre, pca)
    torch.manual_seed(args.seed)
    copies = [augment(original) for _ in range(args.n)]
    title = _title(args.augment, spec, image, pre, pca)
    return _draw_grid(original, copies, title, out)


def _cache_root(folder: str | None) -> Path:
    from heron.models._weights import cache_dir

    return Path(folder) if folder else cache_dir()


def _preview_image(data: Path, image: str | None) -> tuple[Path, list[Path]]:
    """(the image to augment, the training images its colour statistics come from)."""
    from heron.data.images import is_image_file
    from heron.errors import DataError

    if not data.exists():
        raise DataError(f"{data}: not found; pass a dataset folder or an image file")
    if data.is_file() and is_image_file(data):
        return (Path(image) if image else data), [data]
    train = _training_images(data)
    return (Path(image) if image else train[0]), train


def _training_images(data: Path) -> list[Path]:
    """The dataset's training images, or every image of a folder that is no dataset layout."""
    from heron.data.folders import discover
    from heron.data.images import find_images
    from heron.errors import DataError

    try:
        return [path for path, _ in discover(data, min_classes=1, min_per_class_warn=0).train]
    except DataError:
        if not data.is_dir():  # a CSV with a problem: discover's message names it
            raise
    found = find_images(data)  # a folder of photos in no dataset layout
    if not found:
        raise DataError(f"{data}: no images found (.jpg, .png, ...); pass a folder of photos or an image file")
    return found


def _title(name: str, spec, image: Path, pre, pca) -> str:
    settings = spec.describe()
    source = f"; colour PCA of {pca.images} images" if pca is not None else ""
    return f"--augment {name}: {settings}\n{image.name} at {pre.size[0]}x{pre.size[1]}{source}"


def _grid_shape(tiles: int) -> tuple[int, int]:
    """(rows, columns) for `tiles` tiles: near square, fewest empty places, wider rather than taller."""
    start = math.ceil(math.sqrt(tiles))
    cols = min(range(start, start + 3), key=lambda c: (math.ceil(tiles / c) * c - tiles, c))
    return math.ceil(tiles / cols), cols


def _draw_grid(original, copies: list, title: str, out: Path) -> Path:
    """The original (whole, as decoded) and its copies in a labelled grid, written atomically as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from heron._atomic import atomic_save

    rows, cols = _grid_shape(len(copies) + 1)
    fig = Figure(figsize=(2.0 * cols, 2.0 * rows + 0.7), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    height, width = original.shape[1:]
    tiles = [(original, f"original ({width}x{height} decoded)")] + [(c, f"#{i}") for i, c in enumerate(copies, 1)]
    for ax, (img, label) in zip(axes, tiles):
        ax.imshow(img.permute(1, 2, 0).numpy())  # (H, W, 3) uint8
        ax.set_title(label, fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    return atomic_save(out, lambda tmp: fig.savefig(tmp, format="png", facecolor="white"))
