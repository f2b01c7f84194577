"""Style transfer: seconds per L-BFGS iteration, heron's transfer_style against a plain PyTorch loop.

The baseline is the loop a user writes from the notes: the whole EfficientNet-Lite0
trunk (batch norm as trained, NCHW, float32) runs every step, forward hooks grab
the content and style layers, and the same costs (content, Gram style, total
variation, the same weights) are minimised with the same L-BFGS settings from
the same start. heron runs only the trunk up to the deepest layer used, with
batch norm folded into the convolutions, channels_last, the target Grams
computed once; with --bf16 it also times bf16 autocast where the CPU supports it.

Both final images are scored by one fp32 evaluation of J(G), so the printed
costs compare like with like; they must agree within 1%.

    python benchmarks/style.py --sizes 256 512 --steps 30
    python benchmarks/style.py --sizes 256 --steps 100 --content-layers body.1 body.2 body.3 body.4
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from _timing import machine, parse_timing_args, timing_parser
from heron.models import build
from heron.nn.precision import cpu_supports_bf16
from heron.tasks.style import StyleConfig, build_extractor, transfer_style
from heron.tasks.style.images import as_image, fit_size, resize
from heron.tasks.style.optimise import compute_targets, evaluate
from heron.tasks.style.painting import paint_strokes


def _images() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-image's cat as the content, its rocket painted in strokes as the style (uint8, 3 x H x W)."""
    from PIL import Image
    from skimage import data

    rocket = np.asarray(Image.fromarray(data.rocket()).resize((400, 267)))
    content = torch.from_numpy(data.chelsea()).permute(2, 0, 1).contiguous()
    style = torch.from_numpy(np.array(paint_strokes(rocket))).permute(2, 0, 1).contiguous()
    return content, style


class _PlainLoop:
    """The straightforward version: a full trunk forward with hooks on the chosen layers."""

    def __init__(self, layers) -> None:
        self.model = build("efficientnet_lite0", weights="imagenet", include_top=False, padding="symmetric").eval()
        self.model.requires_grad_(False)
        for module in self.model.modules():
            if getattr(module, "inplace", False):
                module.inplace = False
        self.layers = layers
        self.captured: dict[str, torch.Tensor] = {}
        for name in (layers.content, *layers.style):
            self.model.get_submodule(name).register_forward_hook(
                lambda _m, _i, out, name=name: self.captured.__setitem__(name, out))
        spec = self.model.pretrained_cfg
        self.mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std).view(1, 3, 1, 1)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.captured.clear()
        self.model.forward_features((x - self.mean) / self.std)
        return dict(self.captured)

    @staticmethod
    def gram(a: torch.Tensor) -> torch.Tensor:
        c = a.shape[1]
        flat = a.reshape(c, -1)
        return flat @ flat.t()

    def prepare(self, content: torch.Tensor, style: torch.Tensor, config: StyleConfig) -> None:
        """The content activation and the style Grams, for `cost`."""
        self.config = config
        with torch.no_grad():
            self.a_c = self.features(content)[self.layers.content]
            self.grams = {k: self.gram(v) for k, v in self.features(style).items() if k in self.layers.style}

    def cost(self, g: torch.Tensor) -> torch.Tensor:
        """J(G) = alpha J_C + beta J_S + tv weight * TV, written out."""
        config, acts = self.config, self.features(g)
        j_c = 0.5 * ((acts[self.layers.content] - self.a_c) ** 2).sum()
        j_s = 0.0
        for name, weight in self.layers.weights().items():
            _, c, h, w = acts[name].shape
            j_s = j_s + weight * ((self.gram(acts[name]) - self.grams[name]) ** 2).sum() / (2 * h * w * c) ** 2
        tv = ((g[..., 1:, :] - g[..., :-1, :]) ** 2).sum() + ((g[..., :, 1:] - g[..., :, :-1]) ** 2).sum()
        return config.content_weight * j_c + config.style_weight * j_s + config.tv_weight * tv

    def run(self, content: torch.Tensor, style: torch.Tensor, config: StyleConfig) -> torch.Tensor:
        self.prepare(content, style, config)
        g = content.clone().requires_grad_(True)
        if config.optimizer == "lbfgs":
            opt = torch.optim.LBFGS([g], lr=1.0, max_iter=config.steps, max_eval=2 * config.steps, history_size=50,
                                    line_search_fn="strong_wolfe", tolerance_grad=0.0, tolerance_change=0.0)
        else:
            opt = torch.optim.Adam([g], lr=config.lr or 0.02)

        def closure():
            opt.zero_grad()
            total = self.cost(g)
            total.backward()
            return total

        if config.optimizer == "lbfgs":
            opt.step(closure)
        else:
            for _ in range(config.steps):
                opt.step(closure)
                with torch.no_grad():
                    g.clamp_(0, 1)
        return g.detach().clamp(0, 1)


class _count_forwards:
    """Counts a module's forward calls from now on; `pop()` gives the count and stops counting."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.n = 0
        self.handle = module.register_forward_pre_hook(lambda *_: setattr(self, "n", self.n + 1))

    def pop(self) -> int:
        self.handle.remove()
        return self.n


def _same_image_gap(plain: _PlainLoop, extractor, content, style, config: StyleConfig) -> float:
    """Both pipelines' J(G) at one image, relative gap: the check that they minimise the same cost."""
    g = (content + 0.05 * torch.randn(content.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    net, layers = extractor
    targets = compute_targets(net, layers, content, [style], [1.0])
    plain.prepare(content, style, config)
    ours, theirs = evaluate(net, layers, targets, g.requires_grad_(True), config)["total"], plain.cost(g)
    (ours + theirs).backward()  # also the warm-up: the kernels of both are made before the timing
    return float(ours.detach()) / float(theirs.detach()) - 1


def _fp32_cost(image: torch.Tensor, content: torch.Tensor, style: torch.Tensor, config: StyleConfig) -> float:
    """J(G) of a finished image, in fp32 with heron's extractor (one scorer for every contender)."""
    net, layers = build_extractor(config.arch, config.weights)
    targets = compute_targets(net, layers, content, [style], [1.0])
    with torch.no_grad():
        return float(evaluate(net, layers, targets, image[None], config)["total"])


def _layer_study(args, content_u8: torch.Tensor, style_u8: torch.Tensor) -> None:
    """Lite0's content layer, measured: how much of the photo's layout survives, how much style is taken.

    Layout: SSIM between the result and the photo, both greyscale and blurred
    (sigma 2 px), so brushwork does not count, only where things are. Style:
    the final style cost as a share of the photo's own (lower: more style).
    """
    from skimage.filters import gaussian
    from skimage.metrics import structural_similarity

    size = args.sizes[0]
    content = resize(as_image(content_u8), fit_size(tuple(content_u8.shape[-2:]), size))
    style = resize(as_image(style_u8), fit_size(tuple(style_u8.shape[-2:]), size))
    grey = lambda x: gaussian(x[0].mean(0).numpy(), sigma=2)  # noqa: E731
    print(f"{'content layer':<14} {'layout SSIM':>11} {'style left':>10}")
    for layer in args.content_layers:
        config = StyleConfig(size=size, steps=args.steps, content_layer=layer)
        result = transfer_style(content, style, config, progress=False)
        first, last = result.history[0]["style"], result.history[-1]["style"]
        ssim = structural_similarity(grey(content), grey(result.image[None]), data_range=1.0)
        print(f"{layer:<14} {ssim:>11.3f} {last / first:>10.3f}", flush=True)
        if args.out:
            result.save(Path(args.out) / f"content_{layer}.png")


def main() -> None:
    parser = timing_parser(__doc__, repeats=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=30, help="L-BFGS iterations per run (default %(default)s)")
    parser.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    parser.add_argument("--bf16", action="store_true", help="also time heron with bf16 autocast (native bf16 CPUs)")
    parser.add_argument("--content-layers", nargs="+", metavar="LAYER",
                        help="instead of timing: compare these Lite0 content layers at the first size")
    parser.add_argument("--out", metavar="DIR", help="with --content-layers: save each result here")
    args = parse_timing_args(parser)
    print(machine())
    content_u8, style_u8 = _images()
    if args.content_layers:
        return _layer_study(args, content_u8, style_u8)
    print(f"{args.optimizer}, {args.steps} iterations from the photo; forwards = network evaluations, targets included")
    print(f"{'size':>5} {'contender':<24} {'s/iter':>8} {'forwards':>6} {'final J(G)':>12}")
    for size in args.sizes:
        config = StyleConfig(size=size, steps=args.steps, optimizer=args.optimizer)
        content = resize(as_image(content_u8), fit_size(tuple(content_u8.shape[-2:]), size))
        style = resize(as_image(style_u8), tuple(content.shape[-2:]))  # G's size: no Gram rescaling in heron
        extractor = build_extractor(config.arch, config.weights)
        plain = _PlainLoop(extractor[1])
        base = "plain PyTorch loop"
        precisions = {"heron fp32": "fp32", **({"heron bf16": "bf16"} if args.bf16 and cpu_supports_bf16() else {})}

        def contender(name: str, steps: int):
            """Runs one contender for `steps` iterations; returns its image (1, 3, H, W)."""
            cfg = StyleConfig(size=size, steps=steps, optimizer=args.optimizer, precision=precisions.get(name, "fp32"))
            if name == base:
                return plain.run(content, style, cfg)
            return transfer_style(content, style, cfg, extractor=extractor, progress=False).image[None]

        contenders = [base, *precisions]
        for name in contenders:
            contender(name, 3)  # warm-up: the first run of each builds its kernels
        print(f"{size:>5} J(G) of one image (photo + noise), heron / plain - 1: "
              f"{_same_image_gap(plain, extractor, content, style, config):+.1e}")
        seconds, costs = {}, {}
        for name in contenders:
            calls = _count_forwards(plain.model.stem if name == base else extractor[0])
            start = time.perf_counter()
            image = contender(name, args.steps)[0]
            seconds[name] = (time.perf_counter() - start) / args.steps
            costs[name] = _fp32_cost(image, content, style, config)
            print(f"{size:>5} {name:<24} {seconds[name]:>8.3f} {calls.pop():>6} {costs[name]:>12.5g}", flush=True)
        for name in contenders:
            if name != base:
                gap = costs[name] / costs[base] - 1
                print(f"{size:>5} {name} vs plain: {seconds[base] / seconds[name]:.2f}x faster per iteration, "
                      f"final cost {gap:+.2%}")


if __name__ == "__main__":
    main()
