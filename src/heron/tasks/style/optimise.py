"""Optimise the pixels of the generated image G; the network stays fixed.

One level: the targets (the content activation, the style Grams) are
computed once under `torch.inference_mode`, then every step runs the frozen
extractor on G, evaluates J(G) = alpha J_C + beta J_S (+ TV) and updates G
with L-BFGS (the default: few steps, each with a line search) or Adam.
Coarse to fine (`scales > 1`): the first level works at 1/2^(scales-1) of
the size, and each next level starts from the previous result upsampled,
so most of the work happens where pixels are cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from heron.errors import HeronError
from heron.nn.precision import autocast, device_type, resolve_precision
from heron.tasks.style.costs import content_cost, gram_matrix, style_cost, total_variation
from heron.tasks.style.extractor import FeatureExtractor, LayerChoice, build_extractor
from heron.tasks.style.images import (
    as_image, fit_size, luminance, match_luminance, resize, save_image, with_chroma_of,
)

__all__ = ["StyleConfig", "StyleResult", "StyleTargets", "compute_targets", "transfer_style"]

INITS = ("content", "noise", "blend")
OPTIMIZERS = ("lbfgs", "adam")


@dataclass
class StyleConfig:
    """Everything `transfer_style` and `heron style` can set; the CLI flags map onto these fields."""

    size: int = 512  # longer side of the result, px
    steps: int = 200  # optimiser iterations at each level
    content_weight: float = 1.0  # alpha
    style_weight: float = 1e6  # beta
    tv_weight: float = 500.0  # weight of the total-variation term (smooths pixel noise)
    arch: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    content_layer: str | None = None  # default: the architecture's (see extractor.DEFAULT_LAYERS)
    style_layers: tuple[str, ...] | None = None
    style_layer_weights: tuple[float, ...] | None = None  # lambda_l; equal when None
    optimizer: str = "lbfgs"
    lr: float | None = None  # lbfgs 1.0, adam 0.02 (pixels are in [0, 1])
    init: str = "content"  # content | noise | blend
    noise_ratio: float = 0.6  # blend: this much noise, the rest content
    scales: int = 1  # coarse-to-fine levels, each twice the size of the one before
    preserve_color: bool = False  # transfer luminance only; keep the content's colours
    style_weights: tuple[float, ...] | None = None  # one per style image; equal when None
    style_scale: float = 1.0  # style image's longer side relative to the result's
    precision: str = "fp32"  # fp32 | bf16 | auto (see heron.nn.precision)
    device: str = "cpu"  # cpu | cuda | auto
    seed: int = 0

    def check(self) -> None:
        """Raise `HeronError` naming the setting to fix."""
        if self.init not in INITS:
            raise HeronError(f"init {self.init!r}: use one of {', '.join(INITS)}")
        if self.optimizer not in OPTIMIZERS:
            raise HeronError(f"optimizer {self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        if self.size < 16 or self.steps < 1 or self.scales < 1:
            raise HeronError(f"size {self.size}, steps {self.steps}, scales {self.scales}: "
                             "give a size of at least 16 px, 1 step or more and 1 scale or more")
        if not 0.0 <= self.noise_ratio <= 1.0:
            raise HeronError(f"noise ratio {self.noise_ratio}: give a value between 0 and 1")

    def layer_choice(self, default: LayerChoice) -> LayerChoice:
        """The default layers with any content/style layer given here put in their place."""
        style = tuple(self.style_layers) if self.style_layers else default.style
        lams = self.style_layer_weights or (default.style_weights if style == default.style else None)
        return LayerChoice(self.content_layer or default.content, style, lams)


@dataclass
class StyleTargets:
    """What G is compared with at one size: the content activation and one Gram per style layer."""

    content: torch.Tensor  # (1, C, h, w)
    grams: dict[str, torch.Tensor]  # layer -> (1, C, C): weighted mean over the style images
    size: tuple[int, int]  # (H, W) of G these targets are for


@dataclass
class StyleResult:
    """The generated image `(3, H, W)` in [0, 1] and the costs after each step."""

    image: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)

    def save(self, path: str | Path) -> Path:
        return save_image(self.image, path)


# ---------------------------------------------------------------- targets


@torch.inference_mode()
def _activations(extractor: FeatureExtractor, x: torch.Tensor, precision: str) -> dict[str, torch.Tensor]:
    with autocast(precision, x.device):
        return extractor(x)


def compute_targets(
    extractor: FeatureExtractor,
    layers: LayerChoice,
    content: torch.Tensor,
    styles: Sequence[torch.Tensor],
    style_weights: Sequence[float],
    precision: str = "fp32",
) -> StyleTargets:
    """Content activation and target Grams, once, without autograd.

    Several styles: J_S against the weighted mean of their Grams, which has
    the same gradient as sum_s w_s J_S(S_s, G) with weights summing to 1 (the
    two differ by a constant), at one comparison per layer. A style image of
    another size than G is put on G's scale: a Gram sums over positions, so
    it is multiplied by (G's positions / the style's) at each layer.
    """
    content_act = _activations(extractor, content, precision)[layers.content].float().clone()  # (1, C, h, w)
    total = float(sum(style_weights))
    grams: dict[str, torch.Tensor] = {}
    for style, weight in zip(styles, style_weights):
        acts = _activations(extractor, style, precision)
        for name in layers.style:
            positions_s = acts[name].shape[-2] * acts[name].shape[-1]
            gram = gram_matrix(acts[name]) * (weight / total / positions_s)
            grams[name] = grams.get(name, 0) + gram
    target_positions = _positions(extractor, layers.style, content)
    grams = {name: (g * target_positions[name]).clone() for name, g in grams.items()}
    return StyleTargets(content_act, grams, tuple(content.shape[-2:]))


@torch.inference_mode()
def _positions(extractor: FeatureExtractor, names: Sequence[str], like: torch.Tensor) -> dict[str, int]:
    """n_H * n_W of each layer for an input the size of `like` (one cheap forward of a blank image)."""
    acts = extractor(torch.zeros_like(like[:1]))
    return {name: acts[name].shape[-2] * acts[name].shape[-1] for name in names}


# ------------------------------------------------------------------- costs


def evaluate(
    extractor: FeatureExtractor,
    layers: LayerChoice,
    targets: StyleTargets,
    g: torch.Tensor,
    config: StyleConfig,
    precision: str = "fp32",
) -> dict[str, torch.Tensor]:
    """{"content", "style", "tv", "total"} for the generated image `g` `(1, 3, H, W)`, with autograd."""
    with autocast(precision, g.device):
        acts = extractor(g)
    j_c = content_cost(targets.content, acts[layers.content])
    j_s = style_cost(targets.grams, acts, layers.weights())
    tv = total_variation(g) if config.tv_weight else torch.zeros((), device=g.device)
    total = config.content_weight * j_c + config.style_weight * j_s + config.tv_weight * tv
    return {"content": j_c, "style": j_s, "tv": tv, "total": total}


# ---------------------------------------------------------------- optimise


def _initial(content: torch.Tensor, config: StyleConfig, generator: torch.Generator) -> torch.Tensor:
    """G at the first level: the content image, uniform noise, or `noise_ratio` of noise blended in."""
    noise = torch.rand(content.shape, generator=generator).to(content)
    if config.init == "noise":
        return noise
    if config.init == "blend":
        return config.noise_ratio * noise + (1.0 - config.noise_ratio) * content
    return content.clone()


def _optimise_level(
    g: torch.Tensor,
    cost: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    config: StyleConfig,
    on_step: Callable[[int, torch.Tensor, dict[str, float]], None],
) -> torch.Tensor:
    """`config.steps` iterations of L-BFGS or Adam on the pixels of `g`; returns the optimised pixels."""
    g = g.detach().clone().requires_grad_(True)
    if config.optimizer == "lbfgs":
        _lbfgs(g, cost, config, on_step)
    else:
        _adam(g, cost, config, on_step)
    return g.detach().clamp(0.0, 1.0)


def _lbfgs(g: torch.Tensor, cost: Callable, config: StyleConfig, on_step: Callable) -> None:
    """One L-BFGS run of `config.steps` iterations (strong Wolfe line search, at most 2 evaluations a step
    on average); a step is reported when the next one begins, with the costs at its accepted point."""
    opt = torch.optim.LBFGS([g], lr=config.lr or 1.0, max_iter=config.steps, max_eval=2 * config.steps,
                            history_size=50, line_search_fn="strong_wolfe",
                            tolerance_grad=0.0, tolerance_change=0.0)
    state, last, done = opt.state[g], {}, [0]

    def closure() -> torch.Tensor:
        started = state.get("n_iter", 0)
        while done[0] < started - 1:  # iteration `started - 1` ended where the last evaluation was
            done[0] += 1
            on_step(done[0], g, dict(last))
        opt.zero_grad(set_to_none=True)
        costs = cost(g)
        costs["total"].backward()
        last.update({k: float(v.detach()) for k, v in costs.items()})
        return costs["total"]

    opt.step(closure)
    while done[0] < config.steps:  # the last iteration (and any the evaluation budget cut short)
        done[0] += 1
        on_step(done[0], g, dict(last))


def _adam(g: torch.Tensor, cost: Callable, config: StyleConfig, on_step: Callable) -> None:
    """`config.steps` Adam updates, the pixels clamped to [0, 1] after each."""
    opt = torch.optim.Adam([g], lr=config.lr or 0.02)
    for step in range(1, config.steps + 1):
        opt.zero_grad(set_to_none=True)
        costs = cost(g)
        costs["total"].backward()
        opt.step()
        with torch.no_grad():
            g.clamp_(0.0, 1.0)
        on_step(step, g, {k: float(v.detach()) for k, v in costs.items()})


def _level_sizes(content_hw: tuple[int, int], config: StyleConfig) -> list[tuple[int, int]]:
    """(H, W) of each level, coarsest first; the last has the longer side `config.size`."""
    return [fit_size(content_hw, max(16, round(config.size / 2 ** k))) for k in reversed(range(config.scales))]


def _device(config: StyleConfig) -> torch.device:
    return torch.device(device_type(config.device))


def transfer_style(
    content: str | Path | torch.Tensor,
    styles: str | Path | torch.Tensor | Sequence[str | Path | torch.Tensor],
    config: StyleConfig | None = None,
    extractor: tuple[FeatureExtractor, LayerChoice] | None = None,
    frames: str | Path | None = None,
    frame_every: int = 10,
    progress: bool = True,
) -> StyleResult:
    """Paint `content` in the style of `styles`: minimise J(G) = alpha J_C(C, G) + beta J_S(S, G) over G's pixels.

    Args:
        content: path or image tensor (uint8 `(3, H, W)`, or float in [0, 1]).
        styles: one style image or several (weighted by `config.style_weights`).
        config: the settings (`StyleConfig()` when None).
        extractor: a prebuilt `(FeatureExtractor, LayerChoice)`; by default
            `build_extractor(config.arch, config.weights)` with the config's layers.
        frames: a folder for the intermediate images, one every `frame_every` steps.
        progress: a tqdm bar with the current costs.
    Returns:
        `StyleResult` with the image at `config.size` (longer side) and the per-step costs.
    """
    config = config or StyleConfig()
    config.check()
    device = _device(config)
    precision = resolve_precision(config.precision, device)
    style_list = [styles] if isinstance(styles, (str, Path, torch.Tensor)) else list(styles)
    weights = list(config.style_weights or [1.0] * len(style_list))
    if len(weights) != len(style_list) or min(weights) < 0 or sum(weights) <= 0:
        raise HeronError(f"{len(weights)} style weights for {len(style_list)} style images; give one "
                         "non-negative weight per style image")
    content_x = as_image(content).to(device)
    style_xs = [as_image(s).to(device) for s in style_list]
    if extractor is None:
        net, default = build_extractor(config.arch, config.weights, layers=None)
        layers = config.layer_choice(default)
        if layers != default:
            net, layers = build_extractor(config.arch, config.weights, layers=layers)
    else:
        net, layers = extractor
    net = net.to(device)
    if config.preserve_color:
        content_y = luminance(content_x)
        style_xs = [match_luminance(luminance(s), content_y) for s in style_xs]
    run = _Run(config, frames, frame_every, progress)
    generator = torch.Generator().manual_seed(config.seed)
    g = None
    for level, hw in enumerate(_level_sizes(tuple(content_x.shape[-2:]), config)):
        c = resize(luminance(content_x) if config.preserve_color else content_x, hw)
        s_hw = [fit_size(tuple(s.shape[-2:]), max(16, round(max(hw) * config.style_scale))) for s in style_xs]
        targets = compute_targets(net, layers, c, [resize(s, h) for s, h in zip(style_xs, s_hw)], weights, precision)
        g = _initial(c, config, generator) if g is None else resize(g, hw)
        g = _optimise_level(g, lambda x: evaluate(net, layers, targets, x, config, precision), config,
                            run.step_callback(level, hw))
    run.close()
    if config.preserve_color:
        g = with_chroma_of(g, content_x)
    return StyleResult(g[0].cpu(), run.history)


class _Run:
    """The progress bar, the cost history and the frames of one `transfer_style` call."""

    def __init__(self, config: StyleConfig, frames: str | Path | None, frame_every: int, progress: bool):
        self.config, self.history, self.done = config, [], 0
        self.frames = Path(frames) if frames is not None else None
        self.frame_every = max(1, frame_every)
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=config.steps * config.scales, desc="style", unit="step", leave=False)

    def step_callback(self, level: int, hw: tuple[int, int]) -> Callable[[int, torch.Tensor, dict], None]:
        def on_step(step: int, g: torch.Tensor, costs: dict[str, float]) -> None:
            self.done += 1
            self.history.append({"level": level, "step": step, "height": hw[0], "width": hw[1], **costs})
            if self.bar is not None:
                self.bar.set_postfix_str(f"{hw[1]}x{hw[0]} content {costs['content']:.3g} "
                                         f"style {costs['style']:.3g} total {costs['total']:.3g}", refresh=False)
                self.bar.update(1)
            if self.frames is not None and (step % self.frame_every == 0 or step == self.config.steps):
                save_image(g.detach().clamp(0, 1), self.frames / f"frame_{self.done:04d}.png")

        return on_step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
