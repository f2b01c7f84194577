"""The costs of neural style transfer, exactly as the course notes define them.

    J(G) = alpha J_C(C, G) + beta J_S(S, G)

- content, on one layer: J_C = 1/2 ||a_C - a_G||^2 (a plain sum over every
  activation, so it grows with the image's area);
- Gram matrix of a layer: G_kk' = sum_ij a_ijk a_ijk' (channels against channels);
- style, per layer: J_S^l = ||G_S - G_G||_F^2 / (2 n_H n_W n_C)^2, summed over
  the style layers with weights lambda_l.

A total-variation term (squared differences of neighbouring pixels, averaged)
is added on top when asked for: it smooths the high-frequency noise that
pixel optimisation otherwise leaves. Like the content cost it is a plain sum,
so the two keep their ratio at every image size. Pure functions; no state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = ["content_cost", "gram_matrix", "layer_style_cost", "style_cost", "total_variation"]


def gram_matrix(a: torch.Tensor) -> torch.Tensor:
    """Gram matrices `(N, C, C)` of activations `(N, C, H, W)`: G_kk' = sum_ij a_ijk a_ijk'.

    Computed in float32 whatever the input's dtype (the sums are large), and on
    an `(N, H*W, C)` view, which is free for a channels_last tensor.
    """
    n, c, h, w = a.shape
    flat = a.float().permute(0, 2, 3, 1).reshape(n, h * w, c)  # (N, HW, C)
    return flat.transpose(1, 2) @ flat  # (N, C, C)


def content_cost(a_c: torch.Tensor, a_g: torch.Tensor) -> torch.Tensor:
    """J_C = 1/2 ||a_C - a_G||^2 over all elements of two activations of the same shape."""
    return 0.5 * (a_g.float() - a_c.float()).pow(2).sum()


def layer_style_cost(gram_s: torch.Tensor, gram_g: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """J_S^l = ||G_S - G_G||_F^2 / (2 n_H n_W n_C)^2; `shape` is the layer's `(n_C, n_H, n_W)`."""
    n_c, n_h, n_w = shape[-3:]
    return (gram_g - gram_s).pow(2).sum() / float(2 * n_h * n_w * n_c) ** 2


def style_cost(
    grams_s: Mapping[str, torch.Tensor],
    acts_g: Mapping[str, torch.Tensor],
    weights: Mapping[str, float],
) -> torch.Tensor:
    """J_S = sum_l lambda_l J_S^l: target Grams and the generated image's activations, by layer name."""
    total = torch.zeros((), device=next(iter(acts_g.values())).device)
    for name, lam in weights.items():
        a = acts_g[name]  # (N, C, H, W)
        total = total + lam * layer_style_cost(grams_s[name], gram_matrix(a), a.shape[1:])
    return total


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Sum of squared differences between vertically and horizontally neighbouring pixels of `(N, C, H, W)`."""
    dy = (x[..., 1:, :] - x[..., :-1, :]).pow(2).sum()
    dx = (x[..., :, 1:] - x[..., :, :-1]).pow(2).sum()
    return dx + dy
