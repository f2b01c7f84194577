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
"""

from __future__ import annotations

import time

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

    def run(self, content: torch.Tensor, style: torch.Tensor, config: StyleConfig) -> torch.Tensor:
        with torch.no_grad():
            a_c = self.features(content)[self.layers.content]
            grams = {k: self.gram(v) for k, v in self.features(style).items() if k in self.layers.style}
        lam = self.layers.weights()
        g = content.clone().requires_grad_(True)
        opt = torch.optim.LBFGS([g], lr=1.0, max_iter=config.steps, max_eval=2 * config.steps, history_size=50,
                                line_search_fn="strong_wolfe", tolerance_grad=0.0, tolerance_change=0.0)

        def closure():
            opt.zero_grad()
            acts = self.features(g)
            j_c = 0.5 * ((acts[self.layers.content] - a_c) ** 2).sum()
            j_s = 0.0
            for name, weight in lam.items():
                _, c, h, w = acts[name].shape
                j_s = j_s + weight * ((self.gram(acts[name]) - grams[name]) ** 2).sum() / (2 * h * w * c) ** 2
            tv = ((g[..., 1:, :] - g[..., :-1, :]) ** 2).sum() + ((g[..., :, 1:] - g[..., :, :-1]) ** 2).sum()
            total = config.content_weight * j_c + config.style_weight * j_s + config.tv_weight * tv
            total.backward()
            return total

        opt.step(closure)
        return g.detach().clamp(0, 1)


def _fp32_cost(image: torch.Tensor, content: torch.Tensor, style: torch.Tensor, config: StyleConfig) -> float:
    """J(G) of a finished image, in fp32 with heron's extractor (one scorer for every contender)."""
    net, layers = build_extractor(config.arch, config.weights)
    targets = compute_targets(net, layers, content, [style], [1.0])
    with torch.no_grad():
        return float(evaluate(net, layers, targets, image[None], config)["total"])


def main() -> None:
    parser = timing_parser(__doc__, repeats=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=30, help="L-BFGS iterations per run (default %(default)s)")
    parser.add_argument("--bf16", action="store_true", help="also time heron with bf16 autocast (native bf16 CPUs)")
    args = parse_timing_args(parser)
    print(machine())
    content_u8, style_u8 = _images()
    print(f"{'size':>5} {'contender':<24} {'s/iter':>8} {'final J(G)':>12}")
    for size in args.sizes:
        config = StyleConfig(size=size, steps=args.steps)
        content = resize(as_image(content_u8), fit_size(tuple(content_u8.shape[-2:]), size))
        style = resize(as_image(style_u8), fit_size(tuple(style_u8.shape[-2:]), size))
        extractor = build_extractor(config.arch, config.weights)
        plain = _PlainLoop(extractor[1])
        contenders = {"plain PyTorch loop": lambda: plain.run(content, style, config),
                      "heron fp32": lambda: transfer_style(content, style, config, extractor=extractor,
                                                           progress=False).image[None]}
        if args.bf16 and cpu_supports_bf16():
            bf16 = StyleConfig(size=size, steps=args.steps, precision="bf16")
            contenders["heron bf16"] = lambda: transfer_style(content, style, bf16, extractor=extractor,
                                                              progress=False).image[None]
        seconds, costs = {}, {}
        for name, fn in contenders.items():
            start = time.perf_counter()
            image = fn()[0]
            seconds[name] = (time.perf_counter() - start) / args.steps
            costs[name] = _fp32_cost(image, content, style, config)
            print(f"{size:>5} {name:<24} {seconds[name]:>8.3f} {costs[name]:>12.5g}", flush=True)
        base = "plain PyTorch loop"
        for name in contenders:
            if name != base:
                gap = costs[name] / costs[base] - 1
                print(f"{size:>5} {name} vs plain: {seconds[base] / seconds[name]:.2f}x faster per iteration, "
                      f"final cost {gap:+.2%}")


if __name__ == "__main__":
    main()
