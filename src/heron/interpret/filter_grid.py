"""What classic and random 3x3 filters do to a photo, as one labelled grid figure.

The course's first look at convolutions: slide a vertical-edge, horizontal-edge,
Sobel or Scharr filter over a grayscale image and the edges of that orientation
light up; a random filter (an untrained convolution) gives a blurry mixture.
The filtering is `heron.scratch.filters.apply_filter` (numpy im2col); this
module only draws. Each panel shows |response| (a dark-to-light edge and a
light-to-dark edge are equally edges) with the filter's numbers underneath;
brightness tops out at each panel's 99.5th percentile so thin edges stay
visible next to a few very strong ones.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from heron.interpret.plots import save_png as _save_png
from heron.scratch.filters import (
    apply_filter,
    classic_filters,
    random_filters,
    to_grayscale,
)

__all__ = ["MAX_SIDE", "filter_responses", "plot_filter_grid"]

MAX_SIDE = 512  # larger images are block-averaged down first; edges read the same and it stays fast


def _shrink(gray: np.ndarray, max_side: int) -> np.ndarray:
    """Block-average (H, W) by the smallest integer factor that brings both sides to <= max_side."""
    factor = math.ceil(max(gray.shape) / max_side)
    if factor <= 1:
        return gray
    h, w = (gray.shape[0] // factor) * factor, (gray.shape[1] // factor) * factor
    return gray[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def filter_responses(image: np.ndarray, n_random: int = 3, seed: int = 0, max_side: int = MAX_SIDE):
    """Grayscale image and its filtered versions.

    Args:
        image: (H, W), (3, H, W) or (H, W, 3); uint8 or float.
        n_random: how many random Gaussian 3x3 filters to add after the classic ones.
        seed: seed of the random filters.
        max_side: images with a longer side are block-averaged down first.

    Returns:
        (gray (H', W'), {name: (kernel (3, 3), response (H', W'))}) in drawing order.
    """
    gray = _shrink(to_grayscale(image), max_side)
    kernels = classic_filters() | random_filters(n_random, seed=seed)
    return gray, {name: (k, apply_filter(gray, k, padding="same")) for name, k in kernels.items()}


def _kernel_text(kernel: np.ndarray) -> str:
    integer = np.allclose(kernel, np.round(kernel))
    fmt = "{:.0f}" if integer else "{:.1f}"
    return "\n".join("  ".join(fmt.format(v) for v in row) for row in kernel)


def plot_filter_grid(
    image: np.ndarray, path: str | os.PathLike, n_random: int = 3, seed: int = 0, ncols: int = 5
) -> Path:
    """Draw the image and every filter's |response| in a grid and save it as PNG at `path`."""
    gray, responses = filter_responses(image, n_random, seed)
    panels = len(responses) + 1
    nrows = math.ceil(panels / ncols)
    aspect = gray.shape[0] / gray.shape[1]
    fig = Figure(figsize=(2.6 * ncols, (2.6 * aspect + 0.9) * nrows), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    axes[0].imshow(gray, cmap="gray", vmin=0.0, vmax=max(float(gray.max()), 1e-12))
    axes[0].set_title("grayscale input", fontsize=10)
    for ax, (name, (kernel, response)) in zip(axes[1:], responses.items()):
        magnitude = np.abs(response)
        ax.imshow(magnitude, cmap="gray", vmin=0.0, vmax=max(float(np.percentile(magnitude, 99.5)), 1e-12))
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(_kernel_text(kernel), fontsize=7, family="monospace")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[panels:]:
        ax.set_axis_off()
    fig.suptitle("3x3 filters slid over the image (|response|)", fontsize=11)
    return _save_png(fig, path)
