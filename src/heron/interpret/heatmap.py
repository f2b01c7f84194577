"""The heatmap figure: a class map laid over the photo it was computed from.

The map `(h, w)` is upsampled (bilinear) to the shown image, scaled to
[0, 1] (its minimum to its maximum: CAM and FCN maps are relative scores,
their absolute level says nothing), colour-mapped with matplotlib and
alpha-blended over the picture, with the class and its probability in the
title. The picture is the region the network saw (`network_view`): the
evaluation resize and center crop, redone at display resolution so the
overlay lines up with the map and stays sharp. One PNG per image, written
atomically.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from heron.data.transforms import Preprocessing, eval_transform
from heron.interpret.cam import upsample

__all__ = ["network_view", "normalise_map", "blend", "save_heatmap", "DISPLAY_SIDE"]

DISPLAY_SIDE = 480  # longer side of the picture in the figure, in pixels
DPI = 100
# Colour opacity at the map's minimum, as a share of `alpha` (1 at its maximum):
# cold regions stay readable as photo, hot ones carry the colour.
COLD_SHARE = 0.35


def network_view(image: torch.Tensor, pre: Preprocessing, longest: int = DISPLAY_SIDE) -> torch.Tensor:
    """The part of `image (3, H, W) uint8` the network sees, as `(3, h, w) uint8` with longer side `longest`.

    The same resize and center crop as `eval_transform(pre)`, at a size
    proportional to `pre.size`, so the view covers exactly the input's area.
    """
    scale = longest / max(pre.size)
    size = (max(1, round(pre.size[0] * scale)), max(1, round(pre.size[1] * scale)))
    return eval_transform(replace(pre, size=size))(image)


def normalise_map(heat: torch.Tensor) -> torch.Tensor:
    """`(h, w)` scaled to [0, 1], its minimum to 0 and its maximum to 1.

    A flat map becomes 0: one cell upsampled, or all cells equal, leaves float
    rounding noise (~1e-7 of its size) that stretched to [0, 1] would draw as stripes.
    """
    heat = heat.float()
    low, span = heat.min(), heat.max() - heat.min()
    flat = span <= 1e-6 * max(float(heat.abs().max()), 1e-12)
    return torch.zeros_like(heat) if flat else (heat - low) / span


def blend(image: torch.Tensor, heat: torch.Tensor, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """`image (3, H, W) uint8` with the colour-mapped `heat (h, w)` over it: `(H, W, 3)` float32 in [0, 1].

    `heat` is upsampled to the image and normalised; `alpha` is the colour's
    share of the hottest pixels (0: the photo, 1: the map alone), falling to
    `COLD_SHARE * alpha` at the coldest.
    """
    from matplotlib import colormaps

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    level = normalise_map(upsample(heat[None], tuple(image.shape[1:]))[0])  # (H, W)
    colour = colormaps[colormap](level.numpy())[..., :3]  # (H, W, 3)
    photo = image.permute(1, 2, 0).numpy().astype(np.float32) / 255.0  # (H, W, 3)
    weight = alpha * (COLD_SHARE + (1.0 - COLD_SHARE) * level.numpy()[..., None])  # (H, W, 1)
    return np.clip((1.0 - weight) * photo + weight * colour, 0.0, 1.0).astype(np.float32)


def save_heatmap(path: str | Path, image: torch.Tensor, heat: torch.Tensor, title: str, subtitle: str = "",
                 alpha: float = 0.5, colormap: str = "jet", colorbar: bool = True) -> Path:
    """Write the overlay of `heat (h, w)` on `image (3, H, W) uint8` to the PNG `path`.

    `title` (the class and its probability) is drawn large, `subtitle` (the
    method, the file) small beneath it. Drawn on a `Figure` with the Agg
    canvas (no pyplot, no global state), so it runs headless.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.figure import Figure

    height, width = image.shape[1:]
    bar_in, top_in = (0.75 if colorbar else 0.0), 0.62  # room for the colour bar and the titles, inches
    fig_w, fig_h = width / DPI + bar_in + 0.1, height / DPI + top_in + 0.1
    fig = Figure(figsize=(fig_w, fig_h), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.05 / fig_w, 0.05 / fig_h, width / DPI / fig_w, height / DPI / fig_h))
    ax.imshow(blend(image, heat, alpha, colormap))
    ax.set_axis_off()
    ax.text(0.5, 1.0 + 0.36 / (height / DPI), _plain(title), transform=ax.transAxes, ha="center", va="bottom",
            fontsize=_font_size(title, width, 14))
    ax.text(0.5, 1.0 + 0.08 / (height / DPI), _plain(subtitle), transform=ax.transAxes, ha="center",
            va="bottom", fontsize=_font_size(subtitle, width, 9), color="0.35")
    if colorbar:
        box = ax.get_position()
        bar_ax = fig.add_axes((box.x1 + 0.12 / fig_w, box.y0 + box.height * 0.15, 0.14 / fig_w, box.height * 0.7))
        bar = fig.colorbar(ScalarMappable(cmap=colormap), cax=bar_ax, ticks=[0, 1])
        bar.ax.set_yticklabels(["low", "high"], fontsize=8)

    from heron.interpret.plots import save_png

    return save_png(fig, path, dpi=DPI)


def _plain(text: str) -> str:
    """File and class names drawn as they are, not as mathtext."""
    return text.replace("$", r"\$")


def _font_size(text: str, width: int, largest: float) -> float:
    """Points that fit `text` on one line over `width` pixels (a character is about 0.6 em), 6 to `largest`."""
    fits = width * 72 / DPI / (0.6 * max(1, len(text)))
    return float(max(6.0, min(largest, fits)))
