"""Hand-designed 3x3 filters from the course, and applying a filter to an image.

A vertical-edge filter has bright-minus-dark columns, so it lights up where
the image changes from light on the left to dark on the right; its transpose
finds horizontal edges. Sobel and Scharr weigh the centre row more, which makes
them less sensitive to noise. A convolutional network learns its own filters
instead; `random_filters` gives the untrained starting point for comparison.
"""

from __future__ import annotations

import numpy as np

from heron.scratch.conv import conv2d

__all__ = ["CLASSIC_FILTERS", "classic_filters", "random_filters", "to_grayscale", "apply_filter"]

_VERTICAL = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=np.float64)
_SOBEL = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64)
_SCHARR = np.array([[3, 0, -3], [10, 0, -10], [3, 0, -3]], dtype=np.float64)

CLASSIC_FILTERS: dict[str, np.ndarray] = {
    "vertical edge": _VERTICAL,
    "horizontal edge": _VERTICAL.T.copy(),
    "sobel x": _SOBEL,
    "sobel y": _SOBEL.T.copy(),
    "scharr x": _SCHARR,
    "scharr y": _SCHARR.T.copy(),
}


def classic_filters() -> dict[str, np.ndarray]:
    """Copies of the named 3x3 filters (vertical/horizontal edge, Sobel, Scharr)."""
    return {name: k.copy() for name, k in CLASSIC_FILTERS.items()}


def random_filters(count: int, size: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """`count` zero-mean Gaussian filters, like a convolution layer before training."""
    rng = np.random.default_rng(seed)
    return {f"random {i + 1}": rng.standard_normal((size, size)) for i in range(count)}


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """(H, W) or (3, H, W) / (H, W, 3) image of any dtype -> (H, W) float64 in [0, 1] for uint8 input.

    Colour uses the ITU-R 601 luma weights 0.299 R + 0.587 G + 0.114 B.
    """
    img = np.asarray(image)
    scale = 255.0 if img.dtype == np.uint8 else 1.0
    img = img.astype(np.float64) / scale
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[0] in (1, 3):
        img = np.moveaxis(img, 0, -1)  # (H, W, C)
    if img.ndim != 3 or img.shape[-1] not in (1, 3):
        raise ValueError(f"expected a grayscale or RGB image, got shape {image.shape}")
    if img.shape[-1] == 1:
        return img[..., 0]
    return img @ np.array([0.299, 0.587, 0.114])


def apply_filter(gray: np.ndarray, kernel: np.ndarray, padding: str | int = "same") -> np.ndarray:
    """Slide `kernel` (k, k) over a grayscale image (H, W) -> filtered image.

    padding="same" zero-pads (k - 1) // 2 so the output keeps the input size;
    "valid" (or 0) uses no padding. Cross-correlation, like the course and conv layers.
    """
    k = kernel.shape[-1]
    if padding == "same":
        pad = (k - 1) // 2
    elif padding == "valid":
        pad = 0
    else:
        pad = int(padding)
    out = conv2d(gray[None, None].astype(np.float64), kernel[None, None].astype(np.float64), padding=pad)
    return out[0, 0]  # (Ho, Wo)
