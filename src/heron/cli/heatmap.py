"""`heron heatmap RUN IMAGE... -o DIR`: where a classifier looks, one overlay PNG per image.

The method follows the run's head unless `--method` says otherwise: the FCN
head's own class map (`--head fcn`), CAM for a GAP-linear head (`gap`, the
default), Grad-CAM for any other head. Without a run (or with `--arch`) the
model is an ImageNet network of the zoo, the pretrained EfficientNet-Lite0
by default, with ImageNet's labels. `--hires` trades the trunk's last
downsampling for dilation (and skips an FCN head's max pools): a map twice
as fine from the same weights, with the prediction still the model's own.
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from heron.errors import ImageError, ModelError

if TYPE_CHECKING:  # pragma: no cover  (parsing the command line must not import torch)
    import torch
    from torch import nn

DEFAULT_ARCH = "efficientnet_lite0"
METHOD_NAMES = {"cam": "CAM", "gradcam": "Grad-CAM", "fcn": "FCN class map"}


def _alpha(value: str) -> float:
    alpha = float(value)
    if not 0.0 <= alpha <= 1.0:
        raise argparse.ArgumentTypeError("give an opacity between 0 and 1, such as 0.5")
    return alpha


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "heatmap", help="class heatmaps (CAM, Grad-CAM, FCN maps) over images",
        usage="heron heatmap [RUN] IMAGE... -o DIR [--class NAME] [--method M] [--layer NAME] [--hires] "
        "[--arch ARCH]",
        description="Draw where a classifier looks: RUN (a folder from `heron train`) then images, or only "
        "images with an ImageNet model (--arch, default EfficientNet-Lite0). One PNG per image in DIR.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a run folder, then image files or folders (only images without a run, or with --arch)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="folder for the PNGs (made if missing)")
    p.add_argument("--arch", help=f"an ImageNet zoo model instead of RUN (default without a run: {DEFAULT_ARCH})")
    p.add_argument("--weights", default="imagenet", help="'imagenet' or a weights file for --arch")
    p.add_argument("--class", dest="class_name", metavar="NAME", help="map this class (default: the top class)")
    p.add_argument("--method", choices=("auto", "cam", "gradcam", "fcn"), default="auto",
                   help="auto: fcn for an FCN head, cam for a GAP-linear head, else gradcam")
    p.add_argument("--layer", metavar="NAME",
                   help="Grad-CAM layer: a trunk group (stage4, neck) or a dotted module name (default: the last)")
    p.add_argument("--hires", action="store_true",
                   help="twice the map resolution: the trunk's last stride becomes dilation, FCN pools are skipped")
    p.add_argument("--alpha", type=_alpha, default=0.5, help="opacity of the colours over the photo (default 0.5)")
    p.set_defaults(func=run)


@dataclass
class Source:
    """The model maps are drawn from, how its input is made, and its labels."""

    model: nn.Module
    pre: object  # heron.data.transforms.Preprocessing
    labels: list[str]
    multilabel: bool = False
    mean_std: tuple[torch.Tensor, torch.Tensor] | None = None  # a zoo model takes normalised input

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """`(N, 3, h, w)` floats in [0, 1] -> what the model takes."""
        return x if self.mean_std is None else (x - self.mean_std[0]) / self.mean_std[1]


def _is_run(path: str) -> bool:
    return (Path(path) / "config.json").is_file()


def _load(args: argparse.Namespace) -> tuple[Source, list[str]]:
    """The model (a run, or an ImageNet zoo network) and the image arguments."""
    if args.arch is None and _is_run(args.paths[0]):
        from heron.tasks.classify import load_run

        if len(args.paths) < 2:
            raise ImageError(f"{args.paths[0]}: give one or more images after the run folder")
        loaded = load_run(args.paths[0])
        if loaded.metadata is not None:
            raise ModelError(f"{args.paths[0]}: this run's head also takes the files' metadata (--metadata); "
                             "heatmaps need a run trained on the image alone")
        return Source(loaded.model, loaded.pre, loaded.classes, loaded.multilabel), args.paths[1:]
    return _imagenet_source(args.arch or DEFAULT_ARCH, args.weights), args.paths


def _imagenet_source(arch: str, weights: str | None) -> Source:
    """A zoo network with its top and its preprocessing; labels from its weights (else class numbers)."""
    import torch

    from heron.data.transforms import Preprocessing
    from heron.models import build

    net = build(arch, weights=None if weights == "none" else weights).eval()
    spec = getattr(net, "pretrained_cfg", None)
    pre = Preprocessing.from_spec(spec)
    labels = list(spec.categories) if spec and spec.categories else [str(i) for i in range(1000)]
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in (pre.mean, pre.std))
    return Source(net, pre, labels, mean_std=(mean, std))


def _map_model(source: Source, hires: bool) -> nn.Module:
    """The model the maps come from: the source's own, or a copy with its last stride dilated."""
    if not hires:
        return source.model
    from heron.transfer.dilate import dilate_last_stride
    from heron.transfer.model import ClassifierModel

    model = source.model
    if isinstance(model, ClassifierModel) and model.feature_kind == "map" and not hasattr(model.head, "class_map"):
        raise ModelError("--hires: this run's head reads the whole feature map at its trained size; "
                         "use --hires with gap or fcn heads")
    model = copy.deepcopy(model)
    dilate_last_stride(model.backbone if isinstance(model, ClassifierModel) else model)
    return model


def _titles(path: Path, labels: list[str], probs: torch.Tensor, index: int, method: str,
            hires: bool) -> tuple[str, str]:
    """("<class> <prob>", and the top class when another was asked for; "<method> · <file>")."""
    top = int(probs.argmax())
    title = f"{labels[index]} {float(probs[index]):.0%}"
    if index != top:
        title += f"  (top: {labels[top]} {float(probs[top]):.0%})"
    method_name = METHOD_NAMES[method] + (", hi-res" if hires else "")
    return title, f"{method_name}  \u00b7  {path.name}"


def _png_name(path: Path, method: str, used: set[str]) -> str:
    """`<stem>_<method>.png`, numbered when two images share a name."""
    name, n = f"{path.stem}_{method}.png", 1
    while name in used:
        n += 1
        name = f"{path.stem}_{method}-{n}.png"
    used.add(name)
    return name


def run(args: argparse.Namespace) -> int:
    """Write one heatmap PNG per image; exit 2 when an image could not be used."""
    import torch

    from heron.cli.predict import files_to_read
    from heron.data.images import load_image
    from heron.interpret.cam import choose_method, class_maps, probabilities
    from heron.interpret.heatmap import network_view, save_heatmap
    from heron.interpret.overlay import find_class, model_input

    source, image_args = _load(args)
    files, _, missing = files_to_read(image_args, "no images to draw; give image files or folders of images")
    wanted = find_class(args.class_name, source.labels, "--class")
    method = choose_method(source.model) if args.method == "auto" else args.method
    maps_from = _map_model(source, args.hires)
    out, used, failed = Path(args.out), set(), bool(missing)
    for path in files:
        try:
            image = load_image(path)
        except ImageError as err:
            print(f"heron: error: {err}", file=sys.stderr)
            failed = True
            continue
        x = model_input(image, source.pre, source.inputs)  # (1, 3, h, w)
        index = wanted
        if args.hires:  # the dilated copy maps; the title keeps the model's own prediction
            with torch.no_grad():
                probs = probabilities(source.model.eval()(x), source.multilabel)[0]
            index = int(probs.argmax()) if wanted is None else wanted
        try:
            result = class_maps(maps_from, x, method, index, args.layer, pool=not args.hires,
                                multilabel=source.multilabel)
        except ValueError as err:
            raise ModelError(f"--method {method}: {err}") from None
        if not args.hires:  # one forward: the maps' own pass gives the probabilities
            probs, index = result.probs[0], int(result.classes[0])
        title, subtitle = _titles(path, source.labels, probs, index, method, args.hires)
        name = _png_name(path, method + ("_hires" if args.hires else ""), used)
        written = save_heatmap(out / name, network_view(image, source.pre), result.maps[0], title, subtitle,
                               alpha=args.alpha)
        print(written)
    return 2 if failed else 0
