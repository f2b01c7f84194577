"""`heron style CONTENT STYLE [STYLE...] -o OUT.png`: neural style transfer.

The flags map onto `heron.tasks.style.StyleConfig`; the command reads the
images (a missing or corrupt file is one line and exit code 2), runs
`transfer_style` with a progress bar of the current costs, and writes the
result (and, with `--frames DIR`, the intermediate images).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from heron.errors import ImageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "style", help="neural style transfer: a photo painted in the style of other images",
        usage="heron style CONTENT STYLE [STYLE...] -o OUT.png [--size PX] [--steps N] [--content-weight A] "
        "[--style-weight B] [--layers ...] [--init noise|content|blend]",
        description="Optimise the pixels of a new image so that its features at a middle layer match CONTENT "
        "and its Gram matrices at early layers match the STYLE image(s): J = alpha J_C + beta J_S.",
    )
    p.add_argument("content", metavar="CONTENT", help="the photo whose content to keep")
    p.add_argument("styles", nargs="+", metavar="STYLE", help="one or more style images")
    p.add_argument("-o", "--out", required=True, metavar="OUT.png", help="where to write the result")
    p.add_argument("--size", type=int, default=512, help="longer side of the result in px (default %(default)s)")
    p.add_argument("--steps", type=int, default=200, help="optimiser iterations per scale (default %(default)s)")
    p.add_argument("--content-weight", type=float, default=1.0, help="alpha (default %(default)s)")
    p.add_argument("--style-weight", type=float, default=1e6, help="beta (default %(default)g)")
    p.add_argument("--tv-weight", type=float, default=500.0, help="total variation, smooths noise (default %(default)g)")
    p.add_argument("--style-weights", type=float, nargs="+", metavar="W", help="one weight per style image")
    p.add_argument("--content-layer", metavar="NAME", help="default: body.3 for Lite0, conv4_2 for VGG")
    p.add_argument("--layers", nargs="+", metavar="NAME",
                   help="style layers (default: stem body.0 body.1 body.2 for Lite0, conv1_1..conv5_1 for VGG)")
    p.add_argument("--layer-weights", type=float, nargs="+", metavar="L", help="lambda per style layer (default equal)")
    p.add_argument("--init", choices=("content", "noise", "blend"), default="content",
                   help="start from the content image, noise, or a blend (--noise-ratio)")
    p.add_argument("--noise-ratio", type=float, default=0.6, help="noise share for --init blend (default 0.6)")
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    p.add_argument("--lr", type=float, help="learning rate (default: 1.0 for lbfgs, 0.02 for adam)")
    p.add_argument("--scales", type=int, default=1, help="coarse-to-fine levels, each twice the size (default 1)")
    p.add_argument("--preserve-color", action="store_true", help="transfer luminance only; keep the photo's colours")
    p.add_argument("--style-scale", type=float, default=1.0, help="style image size relative to the result's")
    p.add_argument("--arch", default="efficientnet_lite0", help="zoo backbone (vgg16/vgg19 with --weights FILE)")
    p.add_argument("--weights", default="imagenet", help="'imagenet' or a weights file (torchvision .pth for VGG)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="fp32")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", metavar="DIR", help="save an intermediate image every --frame-every steps here")
    p.add_argument("--frame-every", type=int, default=10, metavar="N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace):
    from heron.tasks.style import StyleConfig

    return StyleConfig(
        size=args.size, steps=args.steps, content_weight=args.content_weight, style_weight=args.style_weight,
        tv_weight=args.tv_weight, arch=args.arch, weights=None if args.weights == "none" else args.weights,
        content_layer=args.content_layer, style_layers=tuple(args.layers) if args.layers else None,
        style_layer_weights=tuple(args.layer_weights) if args.layer_weights else None,
        optimizer=args.optimizer, lr=args.lr, init=args.init, noise_ratio=args.noise_ratio, scales=args.scales,
        preserve_color=args.preserve_color,
        style_weights=tuple(args.style_weights) if args.style_weights else None,
        style_scale=args.style_scale, precision=args.precision, device=args.device, seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    """Read the images, paint, write OUT; a bad image or setting is a HeronError (exit code 2)."""
    from heron.data.images import load_image
    from heron.tasks.style import transfer_style

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise ImageError(f"{out}: give an output file ending in .png or .jpg")
    config = _config(args)
    config.check()
    content = load_image(args.content)
    styles = [load_image(path) for path in args.styles]
    result = transfer_style(content, styles, config, frames=args.frames, frame_every=args.frame_every,
                            progress=not args.quiet)
    last = result.history[-1]
    print(f"content {last['content']:.4g}  style {last['style']:.4g}  total {last['total']:.4g}")
    print(result.save(out))
    return 0
